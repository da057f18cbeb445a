using BlockBackup.Engine.Repository;
using Newtonsoft.Json;
using Newtonsoft.Json.Converters;

namespace BlockBackup.Engine.Policies;

[JsonConverter(typeof(StringEnumConverter))]
public enum PolicyHealth
{
    /// <summary>The last run of the volume succeeded and no scheduled run has been missed since.</summary>
    Healthy,
    /// <summary>The last run succeeded, but a scheduled run is overdue (the node was off, or the schedule entry is missing).</summary>
    Late,
    /// <summary>The last run of the volume failed (LastError says why).</summary>
    Failing,
    /// <summary>The policy has not run for the volume yet.</summary>
    NeverRun,
}

/// <summary>A policy's state for one volume, for monitoring (plain data: serialises to JSON as is).</summary>
public sealed record PolicyVolumeStatus
{
    public required string Policy { get; init; }
    public required string Volume { get; init; }
    public required PolicyHealth Health { get; init; }
    public DateTimeOffset? LastSuccessUtc { get; init; }
    /// <summary>Age of the last successful backup, in seconds at the time of the report.</summary>
    public double? LastSuccessAgeSeconds { get; init; }
    public Guid? LastBackupId { get; init; }
    public DateTimeOffset? LastRunUtc { get; init; }
    public DateTimeOffset? NextDueUtc { get; init; }
    public string? LastError { get; init; }
    public string? LastErrorId { get; init; }
    /// <summary>Backups in the chain of the volume's newest backup (the full included).</summary>
    public int ChainLength { get; init; }
    /// <summary>Bytes all the volume's backups occupy in the repository.</summary>
    public long StoredBytes { get; init; }
    /// <summary>When sampled verification (VerifyPercent) last covered the whole repository.</summary>
    public DateTimeOffset? VerificationCoverageUtc { get; init; }
}

/// <summary>Builds the status of a policy from its history, its schedule and its repository (pure apart from the listing it is given).</summary>
public static class PolicyStatusReport
{
    /// <summary>A scheduled run counts as missed this long after it was due (a run takes time; the entry checks every few minutes).</summary>
    public static readonly TimeSpan Grace = TimeSpan.FromMinutes(30);

    public static IReadOnlyList<PolicyVolumeStatus> Build(BackupPolicy policy, PolicyState state, IEnumerable<string> declaredVolumes, IReadOnlyList<BackupInfo>? backups,
        DateTimeOffset now, DateTimeOffset? coverage, string? repositoryError)
    {
        var records = state.Records(policy.Name).Where(r => r.Volume != "*").ToList();
        var volumes = declaredVolumes.Concat(records.Select(r => r.Volume)).Distinct(StringComparer.Ordinal).ToList();
        var next = ScheduleEvaluator.Next(policy, state.LastRunUtc ?? policy.CreatedUtc);
        var overdue = next is { } due && due + Grace < now;
        var policyError = state.Records(policy.Name).LastOrDefault(r => r.Volume == "*" && r.Error is not null);
        return volumes.Select(volume =>
        {
            var mine = records.Where(r => r.Volume == volume).ToList();
            var last = mine.LastOrDefault(r => !r.Skipped);
            var success = mine.LastOrDefault(r => r.Succeeded);
            var ofVolume = success?.BackupId is { } id && backups?.FirstOrDefault(b => b.Id == id) is { } made
                ? backups.Where(b => b.VolumeId == made.VolumeId).ToList() : [];
            // A run that failed for the whole policy (its repository could not be opened, say)
            // after the volume's own last run is that volume's latest outcome too.
            var failedSince = policyError is not null && (last is null || policyError.StartedUtc >= last.StartedUtc) ? policyError : null;
            var health = failedSince is not null ? PolicyHealth.Failing
                : last is null ? PolicyHealth.NeverRun
                : last.Error is not null ? PolicyHealth.Failing
                : overdue ? PolicyHealth.Late
                : PolicyHealth.Healthy;
            return new PolicyVolumeStatus
            {
                Policy = policy.Name,
                Volume = volume,
                Health = health,
                LastSuccessUtc = success?.StartedUtc,
                LastSuccessAgeSeconds = success is null ? null : Math.Round((now - success.StartedUtc).TotalSeconds),
                LastBackupId = success?.BackupId,
                LastRunUtc = failedSince?.StartedUtc ?? last?.StartedUtc,
                NextDueUtc = next,
                LastError = failedSince?.Error ?? last?.Error ?? repositoryError ?? policyError?.Error,
                LastErrorId = failedSince?.ErrorId ?? last?.ErrorId ?? policyError?.ErrorId,
                ChainLength = ofVolume.Count == 0 ? 0 : ChainLength(ofVolume),
                StoredBytes = ofVolume.Sum(b => b.StoredBytes),
                VerificationCoverageUtc = coverage,
            };
        }).ToList();
    }

    private static int ChainLength(List<BackupInfo> backups)
    {
        var byId = backups.ToDictionary(b => b.Id);
        var tip = backups.Where(b => b.Status == BackupStatus.Available).MaxBy(b => b.CreatedUtc);
        var length = 0;
        for (var b = tip; b is not null && length <= backups.Count; b = b.ParentId is { } p && byId.TryGetValue(p, out var parent) ? parent : null)
        {
            length++;
        }

        return length;
    }
}
