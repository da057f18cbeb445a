using System.Globalization;
using BlockBackup.Engine.Repository;
using Newtonsoft.Json;
using Newtonsoft.Json.Linq;

namespace BlockBackup.Engine.Rbd;

/// <summary>
/// The mark a full pool backup puts on the base image it creates (image metadata
/// <c>blockbackup.inflight</c>) before anything is copied into it, and removes once the backup's
/// snapshot and record exist. A base image that carries it and no backup snapshot is the leftover
/// of an interrupted backup: listed as Incomplete, and removed by cleanup once its holder provably
/// runs no more (same process space, PID gone) or it is older than the minimum age. Base images
/// without the mark (Cinder's, possibly being written right now) are never touched.
/// </summary>
internal sealed record RbdInFlight(Guid BackupId, Guid VolumeId, DateTime StartedUtc, string Host, string? Space, int Pid)
{
    public const string Key = "blockbackup.inflight";

    public static RbdInFlight ForThisProcess(Guid backupId, Guid volumeId) =>
        new(backupId, volumeId, DateTime.UtcNow, Environment.MachineName, ProcessSpace.Current, Environment.ProcessId);

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
                (string?)o["host"] ?? "", (string?)o["process_space"], (int?)o["pid"] ?? 0);
        }
        catch (Exception ex) when (ex is JsonException or FormatException or ArgumentNullException or NullReferenceException or InvalidCastException or OverflowException)
        {
            return null;
        }
    }
}
