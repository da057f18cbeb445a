using BlockBackup.Engine.Compression;
using BlockBackup.Engine.Consistency;

namespace BlockBackup.Engine.Operations;

/// <summary>What to back up and how.</summary>
public sealed record BackupRequest
{
    public const long DefaultObjectSize = 8L << 20;

    /// <summary>A raw image file or a block device.</summary>
    public required string SourcePath { get; init; }
    /// <summary>Defaults to a UUID derived from the resolved path, so every backup of a path shares it.</summary>
    public Guid? VolumeId { get; init; }
    public string? Name { get; init; }
    public string? Description { get; init; }
    /// <summary>Back up only what changed since the latest available backup of the volume (or <see cref="ParentId"/>).</summary>
    public bool Incremental { get; init; }
    public Guid? ParentId { get; init; }
    public CompressionAlgorithm Compression { get; init; } = CompressionAlgorithm.Zlib;
    public int? CompressionLevel { get; init; }
    /// <summary>Back up a volume that is in use when no snapshot can be taken.</summary>
    public bool Force { get; init; }
    /// <summary>Object size (Cinder's backup_file_size): a multiple of <see cref="HashBlockSize"/>.</summary>
    public long ObjectSize { get; init; } = DefaultObjectSize;
    public int HashBlockSize { get; init; } = Format.Sha256File.DefaultChunkSize;
    /// <summary>Parallel workers; defaults to the processor count.</summary>
    public int? Workers { get; init; }
    /// <summary>Try a reflink clone / LVM snapshot first (default).</summary>
    public bool UseSnapshot { get; init; } = true;
    /// <summary>The backup policy making this backup: recorded in its metadata, so that the policy's retention removes only what it made.</summary>
    public string? Policy { get; init; }
    /// <summary>
    /// Messages worth a -Verbose line (e.g. the removal of an earlier interrupted backup's
    /// leftovers). Called on the operation's own thread, which is not the pipeline thread.
    /// </summary>
    public Action<string>? Log { get; init; }
}

/// <summary>The outcome of a backup: the new backup plus what it cost.</summary>
public sealed class BackupResult
{
    public required BackupInfo Backup { get; init; }
    public BackupInfo? Parent { get; init; }
    public required ConsistencyMethod Consistency { get; init; }
    public required string ConsistencyDetail { get; init; }
    /// <summary>Bytes actually read from the volume (holes are not read).</summary>
    public required long BytesRead { get; init; }
    /// <summary>Uncompressed bytes of the objects written (the whole volume for a full backup).</summary>
    public required long BytesBackedUp { get; init; }
    public required TimeSpan Duration { get; init; }
}
