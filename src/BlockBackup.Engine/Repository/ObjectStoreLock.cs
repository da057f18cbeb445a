using System.Globalization;
using System.Text;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.ObjectStores;
using Newtonsoft.Json.Linq;

namespace BlockBackup.Engine.Repository;

/// <summary>
/// A per-volume lock on object storage, which has no rename and (Swift on RGW, S3 multipart) no
/// reliable create-only put. Each contender stores its own claim object under the lock's prefix,
/// then lists the prefix: alone (among live claims) it holds the lock; otherwise it withdraws and
/// retries after a random pause. With read-after-write listings (RGW, AWS S3, Swift) two
/// contenders can never both see themselves alone, since the later lister sees the earlier
/// claim. A claim is a lease: its holder renews it; one not renewed within
/// <see cref="LeaseDuration"/> (holder killed, host gone) is stale and deleted by the next contender.
/// A lease can lapse under a holder that still runs (paused longer than the lease, a clock behind
/// the others'): it then has lost the lock for good. Its renewal never writes the claim again once
/// another process deleted it (that would give two holders), and <see cref="IsStillHeld"/> stays
/// false, which the commit of a backup checks (see <see cref="ObjectStoreRepository"/>'s fencing).
/// </summary>
public sealed class ObjectStoreLock : IVolumeLock
{
    public static TimeSpan LeaseDuration { get; set; } = TimeSpan.FromMinutes(2);
    public static TimeSpan RenewInterval { get; set; } = TimeSpan.FromSeconds(30);

    private readonly IObjectStore _store;
    private readonly string _key;
    private readonly string _token;
    private readonly string _operation;
    private readonly Timer _renewal;
    private int _disposed;
    private int _lost;
    private int _renewing;

    private ObjectStoreLock(IObjectStore store, string key, string token, Guid volumeId, string operation)
    {
        _store = store;
        _key = key;
        _token = token;
        _operation = operation;
        VolumeId = volumeId;
        _renewal = new Timer(_ => Renew(), null, RenewInterval, RenewInterval);
    }

    public Guid VolumeId { get; }

    /// <summary>
    /// The claim is still ours and has not lapsed by our own clock (once it lapsed, others may
    /// have judged it gone even if nobody deleted it yet). False from the first time it is not.
    /// </summary>
    public bool IsStillHeld
    {
        get
        {
            if (Volatile.Read(ref _disposed) != 0 || Volatile.Read(ref _lost) != 0)
            {
                return false;
            }

            if (IsOurs(LeaseClaims.Read(_store, _key, CancellationToken.None)))
            {
                return true;
            }

            MarkLost();
            return false;
        }
    }

    /// <summary>Takes the lock under <paramref name="prefix"/>, waiting up to <paramref name="timeout"/> for a live holder.</summary>
    public static ObjectStoreLock Acquire(IObjectStore store, string prefix, Guid volumeId, string operation, TimeSpan timeout, string display,
        CancellationToken cancellationToken, IProgress<OperationProgress>? progress = null)
    {
        var deadline = DateTime.UtcNow + timeout;
        var token = Guid.NewGuid().ToString("N");
        var key = LeaseClaims.NewKey(prefix, token);
        var nextReport = DateTime.MinValue;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            LeaseClaims.Put(store, key, token, operation, [], cancellationToken);
            var holder = LeaseClaims.Live(store, prefix, cancellationToken).FirstOrDefault(c => c.Key != key);
            if (holder.Claim is null)
            {
                return new ObjectStoreLock(store, key, token, volumeId, operation);
            }

            // Someone else holds it (or contends): withdraw, so that the two of us cannot deadlock.
            store.DeleteAsync(key, CancellationToken.None).GetAwaiter().GetResult();
            var who = $"{holder.Claim.Operation} by process {holder.Claim.Pid} on {holder.Claim.Host}, since {holder.Claim.Acquired:u}";
            if (DateTime.UtcNow >= deadline)
            {
                throw new BackupException(BackupErrorKind.ResourceBusy, "VolumeLocked",
                    $"Volume {volumeId} is locked in {display} ({who}); try again when that operation has finished. A holder that died is given up after {LeaseDuration.TotalMinutes:0.#} minutes without renewal.", volumeId);
            }

            if (DateTime.UtcNow >= nextReport)
            {
                progress?.Report(new OperationProgress(OperationPhase.WaitingForLock, 0, 0, $"Waiting for volume {volumeId}: locked ({who})"));
                nextReport = DateTime.UtcNow.AddSeconds(1);
            }

            Task.Delay(TimeSpan.FromMilliseconds(200 + Random.Shared.Next(800)), cancellationToken).GetAwaiter().GetResult();
        }
    }

    /// <summary>Whether a live claim exists under the prefix (a backup of the volume is running).</summary>
    public static bool IsHeld(IObjectStore store, string prefix, CancellationToken cancellationToken) =>
        LeaseClaims.Live(store, prefix, cancellationToken).Any();

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _renewal.Dispose();
        try
        {
            _store.DeleteAsync(_key, CancellationToken.None).GetAwaiter().GetResult();
        }
        catch (Exception ex) when (ex is BackupException or IOException or HttpRequestException)
        {
            // An undeleted claim expires by itself after the lease.
        }
    }

    private bool IsOurs(LeaseClaim? claim) => claim is not null && claim.Token == _token && LeaseClaims.IsValid(claim, DateTime.UtcNow);

    private void MarkLost()
    {
        Volatile.Write(ref _lost, 1);
        try
        {
            _renewal.Change(Timeout.Infinite, Timeout.Infinite);
        }
        catch (ObjectDisposedException)
        {
            // Released meanwhile: nothing renews any more either way.
        }
    }

    /// <summary>
    /// Read, then write: a claim that is gone (deleted by a contender that judged it expired), not
    /// ours or lapsed is not written again. The read and the write are not one step, so a contender
    /// could delete the claim between them and see it come back; the commit's fencing (the
    /// in-flight record) is what keeps that from ever listing an incomplete backup.
    /// </summary>
    private void Renew()
    {
        // One renewal at a time: a store that stalls must not gather a blocked thread a tick.
        if (Volatile.Read(ref _disposed) != 0 || Volatile.Read(ref _lost) != 0 || Interlocked.Exchange(ref _renewing, 1) != 0)
        {
            return;
        }

        try
        {
            if (!IsOurs(LeaseClaims.Read(_store, _key, CancellationToken.None)))
            {
                MarkLost();
                return;
            }

            LeaseClaims.Put(_store, _key, _token, _operation, [], CancellationToken.None);
        }
        catch (Exception ex) when (ex is BackupException or IOException or HttpRequestException)
        {
            // Retried at the next interval; the lease is several intervals long.
        }
        finally
        {
            Volatile.Write(ref _renewing, 0);
        }
    }
}
