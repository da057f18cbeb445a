namespace BlockBackup.Engine.Policies;

/// <summary>A full or an incremental backup, and why.</summary>
public sealed record CadenceDecision(bool Full, string Reason);

/// <summary>
/// Whether a policy's next backup of a volume is full or incremental (pure; the clock is a
/// parameter): full when there is no parent, the volume grew, the last full is FullEvery old, or
/// the chain reached MaxChainLength; incremental otherwise.
/// </summary>
public static class CadencePlanner
{
    public static CadenceDecision Decide(IReadOnlyList<BackupInfo> backupsOfVolume, long volumeSize, BackupPolicy policy, DateTimeOffset now)
    {
        var available = backupsOfVolume.Where(b => b.Status == BackupStatus.Available).ToList();
        var latest = available.MaxBy(b => (b.CreatedUtc, b.Prefix));
        if (latest is null)
        {
            return new(true, "no earlier backup of the volume to base an incremental on");
        }

        if (volumeSize > latest.VolumeSize)
        {
            return new(true, $"the volume grew from {ByteSize.Human(latest.VolumeSize)} to {ByteSize.Human(volumeSize)} since backup {latest.Id}");
        }

        var chain = Chain(available, latest);
        var full = chain[0];
        if (chain[0].ParentId is not null)
        {
            return new(true, $"the chain of backup {latest.Id} is broken (its full backup is missing)");
        }

        // Scheduled runs start a little earlier or later from one day to the next: a full made at
        // 02:05:07 is "a week old" at 02:05:02 seven days later too (a slack of 5%, at most an hour).
        if (policy.FullEvery is { } every && now - new DateTimeOffset(DateTime.SpecifyKind(full.CreatedUtc, DateTimeKind.Utc)) >= every - Slack(every))
        {
            return new(true, $"the last full backup ({full.Id}, {full.CreatedUtc:u}) is at least {every} old (FullEvery)");
        }

        if (policy.MaxChainLength is { } max && chain.Count >= max)
        {
            return new(true, $"the chain already has {chain.Count} backup(s) (MaxChainLength {max})");
        }

        return new(false, $"an incremental of {latest.Id} (chain length {chain.Count + 1})");
    }

    private static TimeSpan Slack(TimeSpan every) => TimeSpan.FromTicks(Math.Min(TimeSpan.FromHours(1).Ticks, every.Ticks / 20));

    private static List<BackupInfo> Chain(List<BackupInfo> available, BackupInfo tip)
    {
        var byId = available.ToDictionary(b => b.Id);
        var chain = new List<BackupInfo> { tip };
        while (chain[0].ParentId is { } parent && byId.TryGetValue(parent, out var p) && chain.Count <= available.Count)
        {
            chain.Insert(0, p);
        }

        return chain;
    }
}
