using Newtonsoft.Json;
using Newtonsoft.Json.Converters;

namespace BlockBackup.Engine;

/// <summary>Whether a backup can be restored.</summary>
[JsonConverter(typeof(StringEnumConverter))]
public enum BackupStatus
{
    /// <summary>Complete: objects, hash list and metadata are all written.</summary>
    Available,
    /// <summary>Being written right now (its volume's repository lock is held).</summary>
    Creating,
    /// <summary>Left behind by a crash, kill or failed delete; never restorable; removed by cleanup.</summary>
    Incomplete,
    /// <summary>Its metadata exists but fails validation (see <see cref="BackupInfo.Problem"/>); kept for inspection, not restorable.</summary>
    Damaged,
}

/// <summary>A full backup stands alone; an incremental needs its parent chain.</summary>
[JsonConverter(typeof(StringEnumConverter))]
public enum BackupType
{
    Full,
    Incremental,
}

/// <summary>
/// One backup in a repository. Plain data properties only, so it survives serialisation
/// (jobs, remoting, ConvertTo-Json) unchanged.
/// </summary>
public sealed record BackupInfo
{
    public required Guid Id { get; init; }
    public required Guid VolumeId { get; init; }
    public string? Name { get; init; }
    public string? Description { get; init; }
    public required DateTime CreatedUtc { get; init; }
    public Guid? ParentId { get; init; }
    public bool IsIncremental => ParentId is not null;
    public BackupType Type => IsIncremental ? BackupType.Incremental : BackupType.Full;
    public required BackupStatus Status { get; init; }
    /// <summary>Bytes of the volume when it was backed up.</summary>
    public long VolumeSize { get; init; }
    /// <summary>Bytes this backup occupies in the repository (its objects).</summary>
    public long StoredBytes { get; init; }
    public int ObjectCount { get; init; }
    /// <summary>zlib, bz2, zstd, none, or "mixed" for foreign backups with several.</summary>
    public string? Compression { get; init; }
    /// <summary>How a point-in-time view was obtained (reflink-clone, lvm-snapshot, direct, direct-forced); null for foreign backups.</summary>
    public string? Consistency { get; init; }
    /// <summary>The path that was backed up, when recorded.</summary>
    public string? Source { get; init; }
    /// <summary>The backup policy that made it (null: by hand, by Cinder, or by a version that did not record it).</summary>
    public string? Policy { get; init; }
    /// <summary>"BlockBackup" or "Cinder" (no BlockBackup fields in the metadata).</summary>
    public required string WrittenBy { get; init; }
    public required string Repository { get; init; }
    /// <summary>Directory of the backup relative to the repository root (Cinder's "container").</summary>
    public required string Container { get; init; }
    /// <summary>Object name prefix (Cinder's service_metadata).</summary>
    public required string Prefix { get; init; }
    /// <summary>
    /// Cinder's service_metadata: the object prefix for file repositories, {"base": "&lt;image&gt;"}
    /// (the base the backup was written to) for RBD backup pools.
    /// </summary>
    public string? ServiceMetadata { get; init; }

    /// <summary>What is wrong with a damaged backup.</summary>
    public string? Problem { get; init; }

    public override string ToString() =>
        $"{Name ?? "(unnamed)"} {Id} ({(IsIncremental ? "incremental" : "full")}, {Status}, {CreatedUtc.ToLocalTime():g})";
}
