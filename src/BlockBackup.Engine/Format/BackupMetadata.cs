using BlockBackup.Engine.Compression;
using Newtonsoft.Json.Linq;

namespace BlockBackup.Engine.Format;

/// <summary>One data object of a backup: where its uncompressed bytes belong in the volume.</summary>
public sealed record ObjectDescriptor(string Name, long Offset, long Length, CompressionAlgorithm Compression, string Md5)
{
    public long End => Offset + Length;
}

/// <summary>
/// The contents of <c>&lt;prefix&gt;_metadata</c>: Cinder's fields plus BlockBackup's own
/// (<see cref="Extra"/>), which live under <c>extra_metadata.blockbackup</c> where Cinder ignores them.
/// </summary>
public sealed class BackupMetadata
{
    public const string SupportedVersion = "1.0.0";

    public required Guid BackupId { get; init; }
    public required Guid VolumeId { get; init; }
    public string? Name { get; init; }
    public string? Description { get; init; }
    /// <summary>Python <c>str(datetime)</c> as Cinder writes it; informational.</summary>
    public required string CreatedAt { get; init; }
    public Guid? ParentId { get; init; }
    public string? VolumeMeta { get; init; }
    public required IReadOnlyList<ObjectDescriptor> Objects { get; init; }
    public BlockBackupExtra? Extra { get; init; }
    /// <summary>extra_metadata members written by other tools, preserved verbatim.</summary>
    public JObject? OtherExtra { get; init; }
}

/// <summary>Fields Cinder has no slot for. Absent on backups Cinder itself wrote.</summary>
public sealed class BlockBackupExtra
{
    public const int CurrentFormat = 1;

    public int Format { get; init; } = CurrentFormat;
    public required long VolumeSize { get; init; }
    public string? Source { get; init; }
    /// <summary>For an RBD source: the snapshot this backup read, which the next incremental diffs from.</summary>
    public string? SourceSnapshot { get; init; }
    public required string Consistency { get; init; }
    public required string Compression { get; init; }
    public int? CompressionLevel { get; init; }
    public required long ObjectSize { get; init; }
    public required int HashBlockSize { get; init; }
    public required DateTime StartedUtc { get; init; }
    public required DateTime CompletedUtc { get; init; }
    public required long StoredBytes { get; init; }
    /// <summary>SHA-256 over the canonical object list (see <see cref="MetadataSerializer.ObjectsChecksum"/>).</summary>
    public required string ObjectsSha256 { get; init; }
    /// <summary>SHA-256 of the sha256file's bytes, which are written before the metadata.</summary>
    public required string Sha256FileSha256 { get; init; }
    public string? Tool { get; init; }
}
