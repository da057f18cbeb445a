using System.Globalization;
using BlockBackup.Engine.Repository;
using Newtonsoft.Json;
using Newtonsoft.Json.Linq;

namespace BlockBackup.Engine.Rbd;

/// <summary>
/// The mark a pool backup puts on its base image (image metadata) before the snapshot of its
/// source is taken or anything is copied, and removes once the backup's snapshot and record
/// exist: <c>blockbackup.inflight</c> on the base image a full backup creates,
/// <c>blockbackup.inflight.&lt;backup id&gt;</c> on the existing base an incremental writes into.
/// It names the source snapshot the backup takes, so a kill at any point leaves nothing cleanup
/// does not know: the leftover is listed as Incomplete and removed (the snapshot on the user's
/// image, the new base image or the mark) once its holder provably runs no more (same process
/// space, PID gone) or it is older than the minimum age. Base images without a mark (Cinder's,
/// possibly being written right now) and snapshots a mark does not name are never touched.
/// </summary>
/// <remarks>
/// A backup of an RBD image into a chunked repository marks the source image itself the same way
/// (<c>blockbackup.inflight.&lt;backup id&gt;</c>, naming the repository), since its repository
/// may be a file system or an object store that knows nothing of Ceph.
/// </remarks>
internal sealed record RbdInFlight(Guid BackupId, Guid VolumeId, DateTime StartedUtc, string Host, string? Space, int Pid, string? Source = null, string? Snapshot = null, string? Repository = null)
{
    public const string Key = "blockbackup.inflight";

    /// <summary>The key of an incremental's mark: one per backup, as several may share a base image.</summary>
    public static string IncrementalKey(Guid backupId) => $"{Key}.{backupId:D}";

    /// <summary>True for the keys marks are stored under.</summary>
    public static bool IsKey(string key) => key == Key || key.StartsWith(Key + ".", StringComparison.Ordinal);

    public static RbdInFlight ForThisProcess(Guid backupId, Guid volumeId, RbdImageRef source, string snapshot, string? repository = null) =>
        new(backupId, volumeId, DateTime.UtcNow, Environment.MachineName, ProcessSpace.Current, Environment.ProcessId, source.Spec, snapshot, repository);

    /// <summary>
    /// The source snapshot this backup took, when the mark names one as such backups name
    /// theirs (<c>backup.&lt;its id&gt;.snap.…</c>) on a valid image: a mark is input others
    /// with write access to the pool could have made, and must not name anything else.
    /// </summary>
    public (RbdImageRef Image, string Snapshot)? SourceSnapshot()
    {
        if (Source is null || Snapshot is null || RbdBackupPool.SnapshotRegex().Match(Snapshot) is not { Success: true } m
            || !Guid.TryParse(m.Groups["bid"].Value, out var id) || id != BackupId)
        {
            return null;
        }

        try
        {
            return (RbdImageRef.Parse(Source), RbdNames.Validate(Snapshot, "snapshot"));
        }
        catch (Errors.BackupException)
        {
            return null;
        }
    }

    public bool HolderIsGone => ProcessSpace.IsGone(Space, Host, Pid);

    public bool MayRemove(TimeSpan minimumAge, DateTime utcNow) => HolderIsGone || utcNow - StartedUtc >= minimumAge;

    public string ToJson() => new JObject
    {
        ["backup_id"] = BackupId.ToString("D"),
        ["volume_id"] = VolumeId.ToString("D"),
        ["started"] = StartedUtc.ToString("O", CultureInfo.InvariantCulture),
        ["host"] = Host,
        ["process_space"] = Space,
        ["pid"] = Pid,
        ["source"] = Source,
        ["source_snapshot"] = Snapshot,
        ["repository"] = Repository,
    }.ToString(Formatting.None);

    /// <summary>Null for anything that is not a whole mark (then the image is left alone).</summary>
    public static RbdInFlight? Parse(string json)
    {
        try
        {
            using var reader = new JsonTextReader(new StringReader(json)) { DateParseHandling = DateParseHandling.None };
            var o = JObject.Load(reader);
            return new RbdInFlight(Guid.Parse((string)o["backup_id"]!), Guid.Parse((string)o["volume_id"]!),
                DateTime.Parse((string)o["started"]!, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind).ToUniversalTime(),
                (string?)o["host"] ?? "", (string?)o["process_space"], (int?)o["pid"] ?? 0,
                (string?)o["source"], (string?)o["source_snapshot"], (string?)o["repository"]);
        }
        catch (Exception ex) when (ex is JsonException or FormatException or ArgumentNullException or NullReferenceException or InvalidCastException or OverflowException)
        {
            return null;
        }
    }
}
