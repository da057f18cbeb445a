namespace BlockBackup.Engine.Policies;

/// <summary>
/// When a policy is due: its schedule had an occurrence after its last run (or, never run, after
/// it was created) and at or before now. After downtime that is one catch-up run, never one per
/// missed occurrence. Daylight-saving changes are Cronos's: a skipped local time runs at the
/// transition, a repeated one runs once.
/// </summary>
public static class ScheduleEvaluator
{
    public static bool IsDue(BackupPolicy policy, DateTimeOffset? lastRunUtc, DateTimeOffset createdUtc, DateTimeOffset now) =>
        Next(policy, lastRunUtc ?? createdUtc) is { } next && next <= now;

    /// <summary>The first occurrence after <paramref name="after"/> (null if the expression never fires again).</summary>
    public static DateTimeOffset? Next(BackupPolicy policy, DateTimeOffset after) =>
        policy.ParseSchedule().GetNextOccurrence(after, policy.Zone());
}
