using BlockBackup.Engine.Errors;

namespace BlockBackup.Engine.Policies;

/// <summary>
/// Which backups of a volume to keep, in restic's terms (<c>forget --keep-*</c>): the last n
/// backups, the newest backup of each of the last n hours/days/ISO weeks/months/years that have
/// a backup (calendar buckets in local time), and every backup made within a span before now.
/// A backup kept by any one of them is kept. Counts of zero are "not used".
/// </summary>
public sealed record RetentionRule
{
    public int KeepLast { get; init; }
    public int KeepHourly { get; init; }
    public int KeepDaily { get; init; }
    public int KeepWeekly { get; init; }
    public int KeepMonthly { get; init; }
    public int KeepYearly { get; init; }

    /// <summary>Keep every backup made within this span before the evaluation time.</summary>
    public TimeSpan? KeepWithin { get; init; }

    /// <summary>
    /// Also remove damaged and incomplete backups that no kept backup needs. Without it they are
    /// reported (kept, with the problem as the reason) and left for inspection.
    /// </summary>
    public bool RemoveDamaged { get; init; }

    /// <summary>
    /// Refuses a rule that would keep nothing (every count zero and no span): applied, it would
    /// remove every backup but the newest; that is almost always a mistake, so restic and PBS refuse it too.
    /// </summary>
    public void Validate()
    {
        foreach (var (name, value) in Counts())
        {
            if (value < 0)
            {
                throw new BackupException(BackupErrorKind.InvalidArgument, "RetentionRuleInvalid",
                    $"{name} is {value}; a retention count is zero (not used) or positive.", this);
            }
        }

        if (KeepWithin is { } within && within <= TimeSpan.Zero)
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "RetentionRuleInvalid",
                $"KeepWithin is {within:c}; it must be a positive time span.", this);
        }

        if (Counts().All(c => c.Value == 0) && KeepWithin is null)
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "RetentionRuleKeepsNothing",
                "The retention rule keeps nothing: give at least one of KeepLast, KeepHourly, KeepDaily, KeepWeekly, KeepMonthly, KeepYearly (a positive count) or KeepWithin. To remove particular backups, use Remove-VolumeBackup.",
                this);
        }
    }

    private IEnumerable<(string Name, int Value)> Counts() =>
    [
        (nameof(KeepLast), KeepLast), (nameof(KeepHourly), KeepHourly), (nameof(KeepDaily), KeepDaily),
        (nameof(KeepWeekly), KeepWeekly), (nameof(KeepMonthly), KeepMonthly), (nameof(KeepYearly), KeepYearly),
    ];

    public override string ToString()
    {
        var parts = Counts().Where(c => c.Value > 0).Select(c => $"{c.Name} {c.Value}").ToList();
        if (KeepWithin is { } within)
        {
            parts.Add($"KeepWithin {within:c}");
        }

        if (RemoveDamaged)
        {
            parts.Add("RemoveDamaged");
        }

        return parts.Count == 0 ? "(keeps nothing)" : string.Join(", ", parts);
    }
}
