namespace BlockBackup.Engine.Policies;

/// <summary>What retention does with a backup.</summary>
public enum RetentionAction
{
    Keep,
    Remove,
}

/// <summary>
/// The retention decision for one backup, with every reason that applies (for a kept backup, why
/// it is kept; for a removed damaged or incomplete backup, what is wrong with it). Plain data, so
/// it serialises; <see cref="Repository"/> and <see cref="BackupId"/> let it pipe into the
/// cmdlets that take a backup by property name.
/// </summary>
public sealed record RetentionDecision
{
    public required BackupInfo Backup { get; init; }
    public required RetentionAction Action { get; init; }
    public required IReadOnlyList<string> Reasons { get; init; }
    /// <summary>
    /// Whether the backup was removed by the call that emitted the decision. Action is the plan;
    /// a removal declined at a prompt, skipped by -WhatIf or -AsOf, or refused leaves it false.
    /// </summary>
    public bool Removed { get; init; }

    public Guid BackupId => Backup.Id;
    public Guid VolumeId => Backup.VolumeId;
    public string Repository => Backup.Repository;

    public override string ToString() => $"{Action} {Backup.Id} ({string.Join("; ", Reasons)})";
}

/// <summary>A retention plan: one decision per backup given, and the order in which to remove.</summary>
public sealed record RetentionPlan
{
    /// <summary>One decision per input backup, in input order.</summary>
    public required IReadOnlyList<RetentionDecision> Decisions { get; init; }

    /// <summary>
    /// The backups to remove, each after every backup that depends on it (per volume, deepest
    /// in its chain first, newest first among equals), so each removal is of a backup nothing
    /// remaining depends on.
    /// </summary>
    public required IReadOnlyList<BackupInfo> RemovalOrder { get; init; }

    public DateTimeOffset EvaluatedAt { get; init; }

    /// <summary>Available backups dated more than <see cref="RetentionPlanner.FutureTolerance"/> after <see cref="EvaluatedAt"/> (a host's clock was ahead): to be reported.</summary>
    public IReadOnlyList<BackupInfo> FutureDated { get; init; } = [];
}
