using System.Runtime.CompilerServices;
using BlockBackup.Engine.ObjectStores;

namespace BlockBackup.Engine.Tests;

/// <summary>
/// A store that passes everything through to another until a chosen call, then holds that call
/// and every later one (the backup's and its lease renewals' alike) until <see cref="Resume"/>:
/// what SIGSTOP does to a process, at a point chosen by name rather than by timing. A put is held
/// before it is sent (<c>beforePut</c>) or after it was stored (<c>afterPut</c>).
/// </summary>
internal sealed class FreezingStore(IObjectStore inner, Func<string, bool>? beforePut = null, Func<string, bool>? afterPut = null) : IObjectStore
{
    private readonly ManualResetEventSlim _frozen = new();
    private readonly ManualResetEventSlim _resumed = new();
    private int _triggered;

    public ObjectStoreProperties Properties => inner.Properties;

    /// <summary>Waits until the chosen call was reached (false after <paramref name="timeout"/>: it never was).</summary>
    public bool WaitFrozen(TimeSpan timeout) => _frozen.Wait(timeout);

    public void Resume() => _resumed.Set();

    public async Task PutAsync(string name, Stream content, long length, PutOptions options, CancellationToken cancellationToken)
    {
        Hold(beforePut, name);
        await inner.PutAsync(name, content, length, options, cancellationToken).ConfigureAwait(false);
        Hold(afterPut, name);
    }

    public async Task<long> PutWrittenAsync(string name, Action<Stream> write, PutOptions options, CancellationToken cancellationToken)
    {
        Hold(beforePut, name);
        var length = await inner.PutWrittenAsync(name, write, options, cancellationToken).ConfigureAwait(false);
        Hold(afterPut, name);
        return length;
    }

    public Task<Stream> GetAsync(string name, long offset = 0, long? length = null, CancellationToken cancellationToken = default)
    {
        Hold(null, name);
        return inner.GetAsync(name, offset, length, cancellationToken);
    }

    public Task<ObjectInfo?> StatAsync(string name, CancellationToken cancellationToken = default)
    {
        Hold(null, name);
        return inner.StatAsync(name, cancellationToken);
    }

    public async IAsyncEnumerable<ObjectInfo> ListAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        Hold(null, prefix);
        await foreach (var o in inner.ListAsync(prefix, cancellationToken).ConfigureAwait(false))
        {
            yield return o;
        }
    }

    public Task DeleteAsync(string name, CancellationToken cancellationToken = default)
    {
        Hold(null, name);
        return inner.DeleteAsync(name, cancellationToken);
    }

    public Task DeleteUnlistedAsync(string prefix, Func<string, bool> isOwned, CancellationToken cancellationToken = default)
    {
        Hold(null, prefix);
        return inner.DeleteUnlistedAsync(prefix, isOwned, cancellationToken);
    }

    public Task FlushAsync(CancellationToken cancellationToken = default)
    {
        Hold(null, string.Empty);
        return inner.FlushAsync(cancellationToken);
    }

    /// <summary>Blocks once triggered (by this call or an earlier one) until resumed.</summary>
    private void Hold(Func<string, bool>? trigger, string name)
    {
        if (trigger?.Invoke(name) == true && Interlocked.Exchange(ref _triggered, 1) == 0)
        {
            _frozen.Set();
        }

        if (Volatile.Read(ref _triggered) != 0)
        {
            _resumed.Wait();
        }
    }
}
