using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using BlockBackup.Engine.Format;
using BlockBackup.Engine.Native;
using Newtonsoft.Json;
using Newtonsoft.Json.Linq;

namespace BlockBackup.Engine.Repository;

/// <summary>
/// <c>.blockbackup/inflight/backup-{id}.json</c> in a file repository: written by BeginBackup
/// before anything else of the backup exists (its fan-out directories, its container, the clone
/// beside the image), deleted once its metadata is in place or its leftovers are gone. So a kill
/// at any step, even between making the container's directories and its first file, leaves a
/// record that the next backup of the volume and Remove-VolumeBackup -Incomplete find. Read as
/// hostile input (others may write the share): the container is derived from the id, never taken
/// from the file, and a clone path is only acted on when it is named exactly as clones are.
/// <see cref="Source"/> names an RBD source (<c>rbd:pool/image</c>) whose snapshot the backup may
/// have left on the image; only the image's own mark can say which snapshot that is.
/// </summary>
internal sealed record InFlightRecord(Guid BackupId, Guid VolumeId, string Prefix, DateTime StartedUtc, string? Snapshot, string? Source = null)
{
    private static readonly Regex FileName = new(@"^backup-(?<id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\.json$", RegexOptions.CultureInvariant);

    /// <summary>A record's temporary (<see cref="AtomicFile.TempName"/>), left only by a writer killed while writing it.</summary>
    private static readonly Regex Temporary = new(@"^\.tmp-[0-9a-f]{32}-backup-[0-9a-f-]{36}\.json$", RegexOptions.CultureInvariant);

    public static string DirectoryOf(string root) => Path.Combine(root, ".blockbackup", "inflight");

    public static string PathFor(string root, Guid backupId) => Path.Combine(DirectoryOf(root), $"backup-{backupId:D}.json");

    /// <summary>Written under a temporary name held with a flock, flushed, renamed into place, the directory synced.</summary>
    public void Write(string root)
    {
        var path = PathFor(root, BackupId);
        AtomicFile.CreateDirectory(Path.GetDirectoryName(path)!);
        var json = new JObject
        {
            ["format"] = 1,
            ["backup_id"] = BackupId.ToString("D"),
            ["volume_id"] = VolumeId.ToString("D"),
            ["prefix"] = Prefix,
            ["started"] = StartedUtc.ToString("O", CultureInfo.InvariantCulture),
            ["snapshot"] = Snapshot,
            ["source"] = Source,
            ["host"] = Environment.MachineName,
            ["pid"] = Environment.ProcessId,
        };
        var temp = AtomicFile.TempName(path);
        FileStream? stream = null;
        try
        {
            stream = HeldFile.Create(temp, FileAccess.Write, AtomicFile.FileMode0660);
            stream.Write(Encoding.UTF8.GetBytes(json.ToString(Formatting.Indented)));
            AtomicFile.FlushToDisk(stream);
            File.Move(temp, path, overwrite: true);
            AtomicFile.SyncDirectory(Path.GetDirectoryName(path)!);
        }
        finally
        {
            AtomicFile.TryDelete(temp);
            stream?.Dispose();
        }
    }

    /// <summary>The record of <paramref name="backupId"/>, or null when there is none or it does not hold together.</summary>
    public static InFlightRecord? TryRead(string root, Guid backupId)
    {
        var path = PathFor(root, backupId);
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists || info.LinkTarget is not null || info.Length > 64 << 10)
            {
                return null;
            }

            var json = Format.JsonDocumentText.ParseObject(File.ReadAllText(path));
            var volumeId = Guid.Parse((string?)json["volume_id"] ?? string.Empty);
            var prefix = (string?)json["prefix"] ?? string.Empty;
            if (Guid.Parse((string?)json["backup_id"] ?? string.Empty) != backupId || !IsValid(backupId, volumeId, prefix))
            {
                return null;
            }

            var started = DateTime.TryParse((string?)json["started"], CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var s) ? s.ToUniversalTime() : info.LastWriteTimeUtc;
            return new InFlightRecord(backupId, volumeId, prefix, started, StringOrNull(json["snapshot"]), StringOrNull(json["source"]));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or JsonException or FormatException or InvalidCastException or ArgumentException or OverflowException)
        {
            return null; // unreadable or hostile: proves nothing, owns nothing
        }
    }

    private static string? StringOrNull(JToken? token) => token?.Type == JTokenType.String ? (string?)token : null;

    /// <summary>The prefix is this very backup's (Cinder's naming, with its ids): nothing else may be deleted in its name.</summary>
    public static bool IsValid(Guid backupId, Guid volumeId, string prefix)
    {
        var m = ObjectNaming.MetadataFileRegex().Match(ObjectNaming.MetadataName(prefix));
        return m.Success && Guid.Parse(m.Groups["vid"].Value) == volumeId && Guid.Parse(m.Groups["bid"].Value) == backupId;
    }

    /// <summary>The ids of every record in the repository (by file name; read each with <see cref="TryRead"/>).</summary>
    public static List<Guid> All(string root)
    {
        try
        {
            var options = new EnumerationOptions { AttributesToSkip = 0, IgnoreInaccessible = true };
            return Directory.EnumerateFiles(DirectoryOf(root), "*", options)
                .Select(f => FileName.Match(Path.GetFileName(f)))
                .Where(m => m.Success)
                .Select(m => Guid.Parse(m.Groups["id"].Value))
                .ToList();
        }
        catch (Exception ex) when (ex is DirectoryNotFoundException or IOException or UnauthorizedAccessException)
        {
            return [];
        }
    }

    public static void Delete(string root, Guid backupId) => File.Delete(PathFor(root, backupId));

    /// <summary>Temporaries of records whose writer was killed while writing them (their flock is free).</summary>
    public static void RemoveAbandonedTemporaries(string root) =>
        HeldFile.RemoveAbandoned(DirectoryOf(root), Temporary, failed: null);
}
