using System.Net;
using System.Net.Sockets;
using BlockBackup.Engine.Errors;

namespace BlockBackup.Engine.ObjectStores;

/// <summary>
/// Bounded retries for object-store requests: exponential backoff from <see cref="BaseDelay"/>,
/// capped at <see cref="MaxDelay"/>, with jitter (each wait is 50-100 % of the exponential step, so
/// many clients throttled at once do not come back in lockstep). What is retried is the store's
/// call: throttling (429, 503 SlowDown), 5xx, time-outs and transient network errors, and only when
/// the request can be sent again (a PUT's content rewinds).
/// </summary>
public sealed class ObjectStoreRetryPolicy
{
    public static ObjectStoreRetryPolicy Default { get; } = new();

    /// <summary>Every request is tried once.</summary>
    public static ObjectStoreRetryPolicy None { get; } = new() { MaxAttempts = 1 };

    /// <summary>Attempts in all, the first included (at least 1).</summary>
    public int MaxAttempts { get; init; } = 6;

    public TimeSpan BaseDelay { get; init; } = TimeSpan.FromMilliseconds(200);

    public TimeSpan MaxDelay { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>The wait before retry number <paramref name="retry"/> (1 = the second attempt).</summary>
    public TimeSpan DelayBefore(int retry)
    {
        var step = Math.Min(MaxDelay.TotalMilliseconds, BaseDelay.TotalMilliseconds * Math.Pow(2, Math.Max(0, retry - 1)));
        return TimeSpan.FromMilliseconds(step / 2 + Random.Shared.NextDouble() * step / 2);
    }

    /// <summary>
    /// Runs <paramref name="attempt"/> until it returns, throws what <paramref name="isTransient"/>
    /// rejects, or <see cref="MaxAttempts"/> attempts threw; the last exception is rethrown as is.
    /// <paramref name="onRetry"/> sees each retried failure (attempt number, exception).
    /// </summary>
    public async Task<T> RunAsync<T>(Func<int, CancellationToken, Task<T>> attempt, Func<Exception, bool> isTransient,
        CancellationToken cancellationToken, Action<int, Exception>? onRetry = null)
    {
        for (var n = 1; ; n++)
        {
            try
            {
                return await attempt(n, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (n < Math.Max(1, MaxAttempts) && !cancellationToken.IsCancellationRequested && isTransient(ex))
            {
                onRetry?.Invoke(n, ex);
            }

            await Task.Delay(DelayBefore(n), cancellationToken).ConfigureAwait(false);
        }
    }

    public async Task RunAsync(Func<int, CancellationToken, Task> attempt, Func<Exception, bool> isTransient,
        CancellationToken cancellationToken, Action<int, Exception>? onRetry = null) =>
        await RunAsync<bool>(async (n, token) => { await attempt(n, token).ConfigureAwait(false); return true; }, isTransient, cancellationToken, onRetry).ConfigureAwait(false);

    /// <summary>HTTP statuses worth another try: time-outs, throttling (429, Swift's 498, 503 SlowDown) and server errors.</summary>
    public static bool IsTransientStatus(int status) => status is 408 or 429 or 498 or 500 or 502 or 503 or 504;

    /// <summary>
    /// A network failure (refused or reset connection, DNS, premature end of a response) or a
    /// client-side time-out, as opposed to the caller's cancellation or an error of ours.
    /// </summary>
    public static bool IsNetworkError(Exception ex, CancellationToken cancellationToken)
    {
        if (FindBackupException(ex) is not null)
        {
            return false; // our own error (short content...) surfacing through the HTTP stack
        }

        for (var e = ex; e is not null; e = e.InnerException)
        {
            switch (e)
            {
                case HttpRequestException or SocketException or IOException or TimeoutException or WebException:
                    return true;
                case OperationCanceledException when !cancellationToken.IsCancellationRequested:
                    return true; // HttpClient's time-out
            }
        }

        return false;
    }

    /// <summary>A BackupException of ours anywhere in the chain (thrown by a content stream inside the HTTP stack).</summary>
    public static BackupException? FindBackupException(Exception ex)
    {
        for (var e = ex; e is not null; e = e.InnerException)
        {
            if (e is BackupException backup)
            {
                return backup;
            }
        }

        return null;
    }
}
