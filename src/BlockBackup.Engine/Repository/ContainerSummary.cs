using System.Globalization;
using Newtonsoft.Json;
using Newtonsoft.Json.Linq;

namespace BlockBackup.Engine.Repository;

/// <summary>
/// <c>blockbackup.json</c> in a container BlockBackup created: a marker while the backup is being
/// written ("creating"), then a cache of its listing fields ("available") so that listing a
/// thousand backups needs no metadata parsing. It is never the source of truth: it is trusted
/// only while the metadata file has the recorded length and modification time, and is rebuilt
/// from the metadata otherwise. Its name does not start with the object prefix, so Cinder
/// ignores it.
/// </summary>
internal sealed class ContainerSummary
{
    public const string FileName = "blockbackup.json";
    public const string StateCreating = "creating";
    public const string StateAvailable = "available";

    public required string State { get; init; }
    public required Guid BackupId { get; init; }
    public required Guid VolumeId { get; init; }
    public required string Prefix { get; init; }
    public long MetadataLength { get; init; }
    public long MetadataMtimeTicks { get; init; }
    public BackupInfo? Info { get; init; }

    public static ContainerSummary? TryRead(string containerPath)
    {
        var path = Path.Combine(containerPath, FileName);
        try
        {
            var o = Format.JsonDocumentText.ParseObject(File.ReadAllText(path));
            var info = o["info"] as JObject;
            return new ContainerSummary
            {
                State = (string)o["state"]!,
                BackupId = Guid.Parse((string)o["backup_id"]!),
                VolumeId = Guid.Parse((string)o["volume_id"]!),
                Prefix = (string)o["prefix"]!,
                MetadataLength = (long?)o["metadata_length"] ?? -1,
                MetadataMtimeTicks = (long?)o["metadata_mtime_ticks"] ?? -1,
                Info = info?.ToObject<BackupInfoRecord>()?.ToInfo(),
            };
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or JsonException or FormatException or ArgumentException or InvalidCastException or NullReferenceException or OverflowException)
        {
            return null;
        }
    }

    public void Write(string containerPath)
    {
        var o = new JObject
        {
            ["format"] = 1,
            ["state"] = State,
            ["backup_id"] = BackupId.ToString("D"),
            ["volume_id"] = VolumeId.ToString("D"),
            ["prefix"] = Prefix,
            ["metadata_length"] = MetadataLength,
            ["metadata_mtime_ticks"] = MetadataMtimeTicks,
            ["host"] = Environment.MachineName,
            ["pid"] = Environment.ProcessId,
            ["written_at"] = DateTime.UtcNow.ToString("O", CultureInfo.InvariantCulture),
        };
        if (Info is not null)
        {
            o["info"] = JObject.FromObject(BackupInfoRecord.From(Info));
        }

        AtomicFile.Write(Path.Combine(containerPath, FileName), s =>
        {
            using var w = new StreamWriter(s, leaveOpen: true);
            w.Write(o.ToString(Formatting.Indented));
            return 0;
        });
    }

    /// <summary>Serialisable shape of <see cref="BackupInfo"/> (repository-relative, no root path).</summary>
    private sealed class BackupInfoRecord
    {
        public Guid Id { get; set; }
        public Guid VolumeId { get; set; }
        public string? Name { get; set; }
        public string? Description { get; set; }
        public DateTime CreatedUtc { get; set; }
        public Guid? ParentId { get; set; }
        public long VolumeSize { get; set; }
        public long StoredBytes { get; set; }
        public int ObjectCount { get; set; }
        public string? Compression { get; set; }
        public string? Consistency { get; set; }
        public string? Source { get; set; }
        public string? Policy { get; set; }
        public string WrittenBy { get; set; } = "BlockBackup";
        public string Container { get; set; } = "";
        public string Prefix { get; set; } = "";

        public static BackupInfoRecord From(BackupInfo b) => new()
        {
            Id = b.Id, VolumeId = b.VolumeId, Name = b.Name, Description = b.Description, CreatedUtc = b.CreatedUtc,
            ParentId = b.ParentId, VolumeSize = b.VolumeSize, StoredBytes = b.StoredBytes, ObjectCount = b.ObjectCount,
            Compression = b.Compression, Consistency = b.Consistency, Source = b.Source, Policy = b.Policy, WrittenBy = b.WrittenBy,
            Container = b.Container, Prefix = b.Prefix,
        };

        public BackupInfo ToInfo() => new()
        {
            Id = Id, VolumeId = VolumeId, Name = Name, Description = Description,
            CreatedUtc = DateTime.SpecifyKind(CreatedUtc, DateTimeKind.Utc), ParentId = ParentId,
            VolumeSize = VolumeSize, StoredBytes = StoredBytes, ObjectCount = ObjectCount, Compression = Compression,
            Consistency = Consistency, Source = Source, Policy = Policy, WrittenBy = WrittenBy, Container = Container, Prefix = Prefix,
            Status = BackupStatus.Available, Repository = "",
        };
    }
}
