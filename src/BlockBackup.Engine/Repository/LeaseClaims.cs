using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.ObjectStores;
using Newtonsoft.Json.Linq;

namespace BlockBackup.Engine.Repository;

/// <summary>One process's claim under a lease prefix: who, for what, until when, and (for readers) which backups.</summary>
internal sealed record LeaseClaim(string Token, string Operation, string Host, int Pid, DateTime Acquired, DateTime Expires, IReadOnlyList<Guid> Backups, string? Process = null)
{
    public string Describe() => $"{Operation} by process {Pid} on {Host}, since {Acquired:u}";
}

/// <summary>
/// Leases kept as small objects in a repository's store: written by their holder, renewed while
/// it lives, and ignored (then deleted) once expired, so a killed holder never blocks anyone for
/// longer than <see cref="Duration"/>. The exclusive volume lock on object storage
/// (<see cref="ObjectStoreLock"/>) and the shared read leases of restores (<see cref="ReadLease"/>) use them.
/// </summary>
internal static partial class LeaseClaims
{
    public static TimeSpan Duration => ObjectStoreLock.LeaseDuration;

    /// <summary>
    /// How far another host's clock may run ahead of ours before its claims count as forged: a
    /// claim acquired more than this in our future, or expiring more than this beyond its own
    /// lease, is invalid (an <c>expires: 9999-…</c> must not block a volume for ever).
    /// </summary>
    public static readonly TimeSpan ClockSkewAllowance = TimeSpan.FromMinutes(5);

    /// <summary>A claim is a few hundred bytes; anything much larger under a lease prefix is not one.</summary>
    private const long MaxClaimSize = 64 << 10;

    /// <summary>A claim's name: when it was made (ticks) and its holder's token, as <see cref="NewKey"/> makes it.</summary>
    [GeneratedRegex(@"^\d{19}-[0-9a-f]{32}$", RegexOptions.CultureInvariant)]
    private static partial Regex ClaimName();

    /// <summary>A new claim's key under <paramref name="prefix"/> for the holder <paramref name="token"/> (32 hex digits).</summary>
    public static string NewKey(string prefix, string token) => $"{prefix}{DateTime.UtcNow.Ticks:D19}-{token}";

    public static void Put(IObjectStore store, string key, string token, string operation, IReadOnlyCollection<Guid> backups, CancellationToken cancellationToken)
    {
        var now = DateTime.UtcNow;
        var json = new JObject
        {
            ["token"] = token,
            ["operation"] = operation,
            ["host"] = Environment.MachineName,
            ["pid"] = Environment.ProcessId,
            ["acquired"] = now.ToString("O", CultureInfo.InvariantCulture),
            ["expires"] = (now + Duration).ToString("O", CultureInfo.InvariantCulture),
            ["backups"] = new JArray(backups.Select(b => b.ToString("D"))),
            ["process_space"] = ProcessSpace.Current,
        };
        var bytes = Encoding.UTF8.GetBytes(json.ToString(Newtonsoft.Json.Formatting.None));
        store.PutAsync(key, new MemoryStream(bytes), bytes.Length, PutOptions.Default, cancellationToken).GetAwaiter().GetResult();
    }

    /// <summary>
    /// Live claims in name order; expired, invalid and unreadable ones are deleted on the way (their
    /// holder is gone). Only names a claim can have, of a claim's size, are read or deleted:
    /// anything else under the prefix was not written by a lease holder (a planted Swift manifest,
    /// another tool's object) and is neither a claim nor ours to delete.
    /// </summary>
    public static List<(string Key, LeaseClaim Claim)> Live(IObjectStore store, string prefix, CancellationToken cancellationToken)
    {
        var keys = new List<string>();
        var enumerator = store.ListAsync(prefix, cancellationToken).GetAsyncEnumerator(cancellationToken);
        try
        {
            while (enumerator.MoveNextAsync().AsTask().GetAwaiter().GetResult())
            {
                if (enumerator.Current.Size <= MaxClaimSize && enumerator.Current.Name.StartsWith(prefix, StringComparison.Ordinal)
                    && ClaimName().IsMatch(enumerator.Current.Name[prefix.Length..]))
                {
                    keys.Add(enumerator.Current.Name);
                }
            }
        }
        finally
        {
            enumerator.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }

        var live = new List<(string, LeaseClaim)>();
        foreach (var key in keys)
        {
            var claim = Read(store, key, cancellationToken);
            if (claim is null || !IsValid(claim, DateTime.UtcNow) || HolderIsGone(claim))
            {
                try
                {
                    store.DeleteAsync(key, cancellationToken).GetAwaiter().GetResult();
                }
                catch (BackupException)
                {
                    // Another contender deleted it first.
                }

                continue;
            }

            live.Add((key, claim));
        }

        return live;
    }

    /// <summary>
    /// Whether a claim still binds others at <paramref name="now"/>: not expired, and not forged.
    /// A holder writes acquired = its now and expires = acquired + the lease at every renewal, so
    /// an expiry further ahead than one lease (plus the skew allowance), or an acquisition in our
    /// future beyond the allowance, was never written by a holder whose clock is near ours.
    /// </summary>
    public static bool IsValid(LeaseClaim claim, DateTime now) =>
        claim.Expires >= now && claim.Acquired <= now + ClockSkewAllowance && claim.Expires - claim.Acquired <= Duration + ClockSkewAllowance;

    /// <summary>
    /// A claim made on this host by a process that no longer runs is provably stale (killed
    /// holders need not cost anyone the lease's length). A reused PID only makes it look alive,
    /// so the lease then runs out as for any other host.
    /// </summary>
    private static bool HolderIsGone(LeaseClaim claim) => ProcessSpace.IsGone(claim.Process, claim.Host, claim.Pid);

    public static LeaseClaim? Read(IObjectStore store, string key, CancellationToken cancellationToken)
    {
        try
        {
            using var stream = store.GetAsync(key, 0, 64 << 10, cancellationToken).GetAwaiter().GetResult();
            using var reader = new StreamReader(stream, Encoding.UTF8);
            var json = JObject.Parse(reader.ReadToEnd());
            var backups = json["backups"] is JArray list ? list.Select(b => Guid.TryParse((string?)b, out var id) ? id : Guid.Empty).Where(id => id != Guid.Empty).ToList() : [];
            return new LeaseClaim((string?)json["token"] ?? string.Empty, (string?)json["operation"] ?? "an operation", (string?)json["host"] ?? "an unknown host",
                (int?)json["pid"] ?? 0,
                DateTime.Parse((string?)json["acquired"] ?? string.Empty, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind),
                DateTime.Parse((string?)json["expires"] ?? string.Empty, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind),
                backups,
                (string?)json["process_space"]);
        }
        catch (BackupException ex) when (ex.Kind == BackupErrorKind.NotFound)
        {
            return null;
        }
        catch (Exception ex) when (ex is Newtonsoft.Json.JsonException or FormatException or InvalidCastException or OverflowException or ArgumentException)
        {
            // A damaged or hostile claim: treated as gone (and deleted), never as a holder forever.
            return null;
        }
    }
}

/// <summary>
/// A restore's or verification's shared claim on the backups it reads: removal refuses those
/// backups while the claim lives (and a killed reader's claim expires). Best effort on a
/// read-only repository: reading must still work where nothing can be written.
/// </summary>
public sealed class ReadLease : IDisposable
{
    private readonly IObjectStore? _store;
    private readonly string _key = string.Empty;
    private readonly Timer? _renewal;
    private int _disposed;
    private int _renewing;

    private ReadLease(IObjectStore store, string key, string token, string operation, IReadOnlyCollection<Guid> backups)
    {
        _store = store;
        _key = key;
        _renewal = new Timer(_ => Renew(token, operation, backups), null, ObjectStoreLock.RenewInterval, ObjectStoreLock.RenewInterval);
    }

    private ReadLease()
    {
    }

    /// <summary>Claims <paramref name="backups"/> under <paramref name="prefix"/> for <paramref name="operation"/>.</summary>
    public static ReadLease Acquire(IObjectStore store, string prefix, string operation, IReadOnlyCollection<Guid> backups, CancellationToken cancellationToken)
    {
        var token = Guid.NewGuid().ToString("N");
        var key = LeaseClaims.NewKey(prefix, token);
        try
        {
            LeaseClaims.Put(store, key, token, operation, backups, cancellationToken);
            return new ReadLease(store, key, token, operation, backups);
        }
        catch (Exception ex) when (ex is BackupException or IOException or UnauthorizedAccessException)
        {
            return new ReadLease(); // a read-only repository: read without a claim
        }
    }

    /// <summary>The live read claims on any of <paramref name="backups"/> (what a removal must not delete now).</summary>
    public static IReadOnlyList<string> Holders(IObjectStore store, string prefix, IReadOnlyCollection<Guid> backups, CancellationToken cancellationToken) =>
        LeaseClaims.Live(store, prefix, cancellationToken).Where(c => c.Claim.Backups.Any(backups.Contains)).Select(c => c.Claim.Describe()).ToList();

    public void Dispose()
    {
        if (_store is null || Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _renewal?.Dispose();
        try
        {
            _store.DeleteAsync(_key, CancellationToken.None).GetAwaiter().GetResult();
        }
        catch (Exception ex) when (ex is BackupException or IOException or UnauthorizedAccessException or HttpRequestException)
        {
            // It expires by itself.
        }
    }

    private void Renew(string token, string operation, IReadOnlyCollection<Guid> backups)
    {
        // One renewal at a time: a store that stalls must not gather a blocked thread a tick.
        if (Volatile.Read(ref _disposed) != 0 || _store is null || Interlocked.Exchange(ref _renewing, 1) != 0)
        {
            return;
        }

        try
        {
            LeaseClaims.Put(_store, _key, token, operation, backups, CancellationToken.None);
        }
        catch (Exception ex) when (ex is BackupException or IOException or UnauthorizedAccessException or HttpRequestException)
        {
            // Retried at the next interval; the lease is several intervals long.
        }
        finally
        {
            Volatile.Write(ref _renewing, 0);
        }
    }
}

/// <summary>Removal's side of the read leases.</summary>
internal static class RemovalGuard
{
    /// <summary>Refuses to remove <paramref name="order"/> while a restore or verification reads any of it.</summary>
    public static void RefuseWhileRead(IObjectStore store, string readersPrefix, Guid backupId, IReadOnlyList<BackupInfo> order, CancellationToken cancellationToken)
    {
        var readers = ReadLease.Holders(store, readersPrefix, order.Select(b => b.Id).ToList(), cancellationToken);
        if (readers.Count > 0)
        {
            throw new BackupException(BackupErrorKind.ResourceBusy, "BackupInUse",
                $"Backup {backupId}{(order.Count > 1 ? " (or a dependent being removed with it)" : string.Empty)} is being read: {string.Join("; ", readers)}. Nothing was removed; try again when that has finished.", backupId);
        }
    }
}

/// <summary>
/// Where a PID names the same process as here: this boot of this kernel and this PID namespace
/// (Linux boot id + /proc/self/ns/pid). A host name alone is not enough: cloned machines and
/// containers share names, and a PID from one of them means nothing in another. Null where unknown
/// (then a holder's liveness is judged by its lease or heartbeat alone).
/// </summary>
internal static class ProcessSpace
{
    public static readonly string? Current = Read();

    /// <summary>
    /// True when a holder recorded as (process space, host, pid) provably runs no more: it ran in
    /// this process space (the same host name is not enough: cloned machines, containers) and no
    /// process has its PID. A reused PID only makes it look alive, so it is then waited for.
    /// </summary>
    public static bool IsGone(string? space, string host, int pid)
    {
        if (Current is null || space != Current || !string.Equals(host, Environment.MachineName, StringComparison.OrdinalIgnoreCase)
            || pid <= 0 || pid == Environment.ProcessId)
        {
            return false;
        }

        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return process.HasExited;
        }
        catch (ArgumentException)
        {
            return true; // no such process
        }
        catch (InvalidOperationException)
        {
            return true;
        }
    }

    private static string? Read()
    {
        try
        {
            if (!OperatingSystem.IsLinux())
            {
                return null;
            }

            var boot = File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim();
            var ns = new FileInfo("/proc/self/ns/pid").LinkTarget;
            return boot.Length > 0 && ns is not null ? $"{boot} {ns}" : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
