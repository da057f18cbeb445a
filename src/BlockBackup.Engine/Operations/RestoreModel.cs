using Newtonsoft.Json;
using Newtonsoft.Json.Converters;

namespace BlockBackup.Engine.Operations;

/// <summary>Which restore path is taken.</summary>
[JsonConverter(typeof(StringEnumConverter))]
public enum RestorePath
{
    /// <summary>A full backup's objects alone (or, for RBD, a full copy of the base image at the restore point).</summary>
    Full,
    /// <summary>A full backup plus incrementals, each block taken from the newest backup that holds it.</summary>
    Chain,
    /// <summary>RBD only: export-diff of the base at the restore point imported into an empty RBD image.</summary>
    Differential,
}

/// <summary>The restore path and the rule that decided it, shown by Restore-VolumeBackup (also under -WhatIf).</summary>
public sealed record RestoreDecision(RestorePath Path, string Rule, string Reason, string? RestorePoint = null)
{
    public override string ToString() => $"{Path} ({Rule}): {Reason}";
}

public sealed class RestoreRequest
{
    public required Guid BackupId { get; init; }
    /// <summary>A file (created when missing) or a block device.</summary>
    public required string TargetPath { get; init; }
    /// <summary>Allow overwriting a target that already holds data (then restored exactly: uncovered blocks are zeroed).</summary>
    public bool Overwrite { get; init; }
    public int? Workers { get; init; }
}

public sealed class RestoreResult
{
    public required BackupInfo Backup { get; init; }
    /// <summary>The restored backup's id and repository, so results pipe on by property name (e.g. into Test-VolumeBackup).</summary>
    public Guid BackupId => Backup.Id;
    public string Repository => Backup.Repository;
    public required string TargetPath { get; init; }
    public required RestoreDecision Decision { get; init; }
    public RestorePath Path => Decision.Path;
    public required int ChainLength { get; init; }
    public required long VolumeSize { get; init; }
    /// <summary>Bytes of data written to the target (zeros skipped on a new file are not counted).</summary>
    public required long BytesWritten { get; init; }
    /// <summary>Bytes left as holes on a new target or zeroed on an existing one.</summary>
    public required long ZeroBytes { get; init; }
    /// <summary>Hash blocks checked against the backup's SHA-256 list (all of them).</summary>
    public required long BlocksVerified { get; init; }
    public required bool TargetWasNew { get; init; }
    public required TimeSpan Duration { get; init; }

    public override string ToString() => $"{Backup.Id} -> {TargetPath}: {Decision}";
}

/// <summary>What a restore would do (see <see cref="RestoreOperation.Preview"/>).</summary>
public sealed record RestorePreview(BackupChain Chain, RestoreDecision Decision, string TargetPath, bool TargetExists, bool TargetHoldsData, bool TargetIsBlockDevice, long TargetSize);
