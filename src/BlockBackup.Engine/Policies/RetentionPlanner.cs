using System.Globalization;

namespace BlockBackup.Engine.Policies;

/// <summary>
/// Decides which backups a retention rule keeps: a pure function of (backups, rule, now, time
/// zone), no I/O, so the cmdlet's preview and its removal run the same code, and tests use fixed tables.
/// <para>
/// Per volume, as restic's <c>forget</c> defines it (internal/data/snapshot_policy.go): the
/// available backups made up to now are taken newest first; each Keep* count is a number of
/// calendar buckets (hour, day, ISO week from Monday, month, year, in local time) that have a
/// backup, each bucket filled by its newest backup; the rules are ORed, so one backup can fill a
/// bucket of several rules (unlike Proxmox Backup Server, whose later rules skip buckets an earlier
/// rule already covered). When a rule still has counts left at the oldest backup, that backup is
/// kept too ("oldest daily …"), as restic does, so the longest history is kept. KeepWithin keeps
/// what was made within the span before now.
/// </para>
/// <para>
/// Then what a block backup needs on top: a kept incremental needs its whole chain, so each parent
/// of a kept backup is kept ("needed by &lt;child&gt;"); the newest available backup of a volume is
/// never removed (the next incremental's parent); backups in progress are kept; damaged and
/// incomplete backups never fill a bucket and are removed only with <see cref="RetentionRule.RemoveDamaged"/>;
/// backups made after now (when evaluating as of an earlier time) are kept and fill no bucket.
/// </para>
/// <para>
/// A backup dated more than <see cref="FutureTolerance"/> after now (its host's clock was ahead)
/// is listed in <see cref="RetentionPlan.FutureDated"/> and still kept as "made after", but it
/// never takes the newest backup's protection from the backups made by a correct clock: the
/// newest backup not dated in the future is kept too (with the chain it needs), otherwise
/// KeepWithin would remove the latest real backups for as long as the clock was ahead.
/// </para>
/// </summary>
public static class RetentionPlanner
{
    public const string NewestReason = "newest available backup of the volume";
    public const string NewestNotFutureReason = "newest available backup not dated in the future";

    /// <summary>How far after now a backup may be dated before it counts as dated in the future (clock skew between hosts).</summary>
    public static readonly TimeSpan FutureTolerance = TimeSpan.FromMinutes(5);

    /// <summary>The available backups dated more than <see cref="FutureTolerance"/> after <paramref name="now"/>, oldest first.</summary>
    public static IReadOnlyList<BackupInfo> DatedInFuture(IEnumerable<BackupInfo> backups, DateTimeOffset now) =>
        backups.Where(b => b.Status == BackupStatus.Available && Utc(b.CreatedUtc) > now.UtcDateTime + FutureTolerance).OrderBy(b => Utc(b.CreatedUtc)).ToList();

    /// <summary>The warning for a backup dated in the future, naming it and its date.</summary>
    public static string FutureDatedWarning(BackupInfo backup, DateTimeOffset now) =>
        $"Backup {backup.Id} of volume {backup.VolumeId} is dated {Utc(backup.CreatedUtc).ToString("u", CultureInfo.InvariantCulture)}, " +
        $"{Span(Utc(backup.CreatedUtc) - now.UtcDateTime)} after {now.UtcDateTime.ToString("u", CultureInfo.InvariantCulture)}: the clock of the host that made it was ahead. " +
        "It is kept, and so is the newest backup not dated in the future; correct that host's clock.";

    private static string Span(TimeSpan span) =>
        span.TotalDays >= 1 ? string.Create(CultureInfo.InvariantCulture, $"{span.TotalDays:0.#} days")
        : span.TotalHours >= 1 ? string.Create(CultureInfo.InvariantCulture, $"{span.TotalHours:0.#} hours")
        : string.Create(CultureInfo.InvariantCulture, $"{span.TotalMinutes:0} minutes");
    public const string InProgressReason = "in progress";
    public const string IncompleteReason = "incomplete";
    public const string NotSelectedReason = "not selected";
    public const string NoRuleReason = "no rule keeps it";

    /// <summary>Plans with the clock's current time and local time zone.</summary>
    public static RetentionPlan Plan(IReadOnlyList<BackupInfo> backups, RetentionRule rule, TimeProvider clock, Func<BackupInfo, bool>? isSelected = null) =>
        Plan(backups, rule, clock.GetUtcNow(), clock.LocalTimeZone, isSelected);

    /// <summary>
    /// Plans retention for <paramref name="backups"/> (any mix of volumes and statuses, e.g. a
    /// repository listing with incomplete ones) as of <paramref name="now"/>, calendar buckets in
    /// <paramref name="zone"/>. With <paramref name="isSelected"/>, only the selected backups are
    /// subject to the rule (they alone fill buckets); the others are kept as "not selected", and
    /// their parents with them.
    /// </summary>
    public static RetentionPlan Plan(IReadOnlyList<BackupInfo> backups, RetentionRule rule, DateTimeOffset now, TimeZoneInfo zone, Func<BackupInfo, bool>? isSelected = null)
    {
        ArgumentNullException.ThrowIfNull(backups);
        ArgumentNullException.ThrowIfNull(rule);
        ArgumentNullException.ThrowIfNull(zone);
        rule.Validate();

        var nowUtc = now.UtcDateTime;
        var reasons = new List<string>?[backups.Count];
        var kept = new bool[backups.Count];

        void Keep(int i, string reason)
        {
            kept[i] = true;
            (reasons[i] ??= []).Add(reason);
        }

        void Note(int i, string reason) => (reasons[i] ??= []).Add(reason);

        foreach (var volume in Enumerable.Range(0, backups.Count).GroupBy(i => backups[i].VolumeId))
        {
            var indices = volume.ToList();
            var candidates = new List<int>();
            foreach (var i in indices)
            {
                var b = backups[i];
                if (isSelected is not null && !isSelected(b))
                {
                    Keep(i, NotSelectedReason);
                    continue;
                }

                switch (b.Status)
                {
                    case BackupStatus.Available when Utc(b.CreatedUtc) > nowUtc:
                        Keep(i, $"made after {now.ToString("u", CultureInfo.InvariantCulture)}, the time evaluated");
                        break;
                    case BackupStatus.Available:
                        candidates.Add(i);
                        break;
                    case BackupStatus.Creating:
                        Keep(i, InProgressReason);
                        break;
                    default:
                        var problem = b.Status == BackupStatus.Incomplete ? IncompleteReason : $"damaged: {b.Problem ?? "its metadata fails validation"}";
                        if (rule.RemoveDamaged)
                        {
                            Note(i, problem);
                        }
                        else
                        {
                            Keep(i, problem);
                        }

                        break;
                }
            }

            ApplyRule(backups, candidates, rule, nowUtc, zone, Keep);

            var available = indices.Where(i => backups[i].Status == BackupStatus.Available)
                .OrderByDescending(i => Utc(backups[i].CreatedUtc)).ThenByDescending(i => backups[i].Prefix, StringComparer.Ordinal)
                .ToList();
            if (available.Count > 0)
            {
                Keep(available[0], NewestReason);
                // The newest by date may be dated in the future (a clock ahead): the newest made
                // by a correct clock keeps its protection anyway.
                if (Utc(backups[available[0]].CreatedUtc) > nowUtc + FutureTolerance
                    && available.FirstOrDefault(i => Utc(backups[i].CreatedUtc) <= nowUtc + FutureTolerance, -1) is var real and >= 0)
                {
                    Keep(real, NewestNotFutureReason);
                }
            }
        }

        // Chain closure: a kept backup's parent is kept, and so on up to the full backup.
        var byId = new Dictionary<Guid, int>(backups.Count);
        for (var i = 0; i < backups.Count; i++)
        {
            // Prefer the available copy when an id is listed twice (as BackupGraph.Chain does).
            if (!byId.TryGetValue(backups[i].Id, out var existing) || (backups[existing].Status != BackupStatus.Available && backups[i].Status == BackupStatus.Available))
            {
                byId[backups[i].Id] = i;
            }
        }

        var frontier = new Queue<int>(Enumerable.Range(0, backups.Count).Where(i => kept[i]));
        while (frontier.Count > 0)
        {
            var child = frontier.Dequeue();
            if (backups[child].ParentId is not { } parentId || !byId.TryGetValue(parentId, out var parent) || parent == child)
            {
                continue;
            }

            var wasKept = kept[parent];
            Keep(parent, $"needed by {backups[child].Id}");
            if (!wasKept)
            {
                frontier.Enqueue(parent);
            }
        }

        var decisions = new RetentionDecision[backups.Count];
        for (var i = 0; i < backups.Count; i++)
        {
            var list = reasons[i] ?? [];
            if (!kept[i])
            {
                list.Add(NoRuleReason);
            }

            decisions[i] = new RetentionDecision { Backup = backups[i], Action = kept[i] ? RetentionAction.Keep : RetentionAction.Remove, Reasons = list };
        }

        return new RetentionPlan { Decisions = decisions, RemovalOrder = RemovalOrder(backups, kept, byId), EvaluatedAt = now, FutureDated = DatedInFuture(backups, now) };
    }

    private sealed class Bucket(int count, Func<DateTime, long> key, Func<DateTime, string> label)
    {
        public int Left = count;
        public long? Last;
        public readonly Func<DateTime, long> Key = key;
        public readonly Func<DateTime, string> Label = label;
    }

    /// <summary>restic's ApplyPolicy over one volume's candidates (available backups made up to now).</summary>
    private static void ApplyRule(IReadOnlyList<BackupInfo> backups, List<int> candidates, RetentionRule rule, DateTime nowUtc, TimeZoneInfo zone, Action<int, string> keep)
    {
        // Newest first; equal times newest-listed first (the listing orders ties by prefix).
        candidates.Sort((a, b) =>
        {
            var byTime = Utc(backups[b].CreatedUtc).CompareTo(Utc(backups[a].CreatedUtc));
            return byTime != 0 ? byTime : string.CompareOrdinal(backups[b].Prefix, backups[a].Prefix);
        });

        var rank = 0;
        var buckets = new List<Bucket>();
        if (rule.KeepLast > 0)
        {
            buckets.Add(new Bucket(rule.KeepLast, _ => rank, _ => $"last {rank + 1}"));
        }

        Add(rule.KeepHourly, t => ((t.Year * 100L + t.Month) * 100 + t.Day) * 100 + t.Hour, t => "hourly " + t.ToString("yyyy-MM-dd HH:00", CultureInfo.InvariantCulture));
        Add(rule.KeepDaily, t => (t.Year * 100L + t.Month) * 100 + t.Day, t => "daily " + t.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture));
        Add(rule.KeepWeekly, t => ISOWeek.GetYear(t) * 100L + ISOWeek.GetWeekOfYear(t), t => $"weekly {ISOWeek.GetYear(t)}-W{ISOWeek.GetWeekOfYear(t):00}");
        Add(rule.KeepMonthly, t => t.Year * 100L + t.Month, t => "monthly " + t.ToString("yyyy-MM", CultureInfo.InvariantCulture));
        Add(rule.KeepYearly, t => t.Year, t => "yearly " + t.ToString("yyyy", CultureInfo.InvariantCulture));

        void Add(int count, Func<DateTime, long> key, Func<DateTime, string> label)
        {
            if (count > 0)
            {
                buckets.Add(new Bucket(count, key, label));
            }
        }

        var withinStart = rule.KeepWithin is { } within ? (nowUtc - DateTime.MinValue > within ? nowUtc - within : DateTime.MinValue) : (DateTime?)null;
        for (rank = 0; rank < candidates.Count; rank++)
        {
            var i = candidates[rank];
            var utc = Utc(backups[i].CreatedUtc);
            var local = TimeZoneInfo.ConvertTimeFromUtc(utc, zone);
            var oldest = rank == candidates.Count - 1;
            if (withinStart is { } start && utc > start)
            {
                keep(i, $"within {rule.KeepWithin!.Value:c}");
            }

            foreach (var bucket in buckets)
            {
                if (bucket.Left == 0)
                {
                    continue;
                }

                var key = bucket.Key(local);
                if (key != bucket.Last)
                {
                    keep(i, bucket.Label(local));
                }
                else if (oldest)
                {
                    // restic: counts left at the oldest backup keep it too (the longest history).
                    keep(i, "oldest " + bucket.Label(local));
                }
                else
                {
                    continue;
                }

                bucket.Last = key;
                bucket.Left--;
            }
        }
    }

    /// <summary>Removed backups, per volume, each after its dependents: deepest in the chain first, then newest first.</summary>
    private static List<BackupInfo> RemovalOrder(IReadOnlyList<BackupInfo> backups, bool[] kept, Dictionary<Guid, int> byId)
    {
        var depth = new int[backups.Count];
        Array.Fill(depth, -1);
        var path = new List<int>();
        for (var i = 0; i < backups.Count; i++)
        {
            // Walk up to a known depth or a root; a broken or cyclic chain ends the walk.
            path.Clear();
            var current = i;
            var onPath = new HashSet<int>();
            while (depth[current] < 0 && onPath.Add(current))
            {
                path.Add(current);
                if (backups[current].ParentId is { } p && byId.TryGetValue(p, out var parent))
                {
                    current = parent;
                }
                else
                {
                    break;
                }
            }

            var d = depth[current] >= 0 && !onPath.Contains(current) ? depth[current] + 1 : 0;
            for (var k = path.Count - 1; k >= 0; k--)
            {
                depth[path[k]] = d++;
            }
        }

        var volumeOrder = new Dictionary<Guid, int>();
        foreach (var b in backups)
        {
            volumeOrder.TryAdd(b.VolumeId, volumeOrder.Count);
        }

        return Enumerable.Range(0, backups.Count).Where(i => !kept[i])
            .OrderBy(i => volumeOrder[backups[i].VolumeId])
            .ThenByDescending(i => depth[i])
            .ThenByDescending(i => Utc(backups[i].CreatedUtc))
            .Select(i => backups[i])
            .ToList();
    }

    private static DateTime Utc(DateTime t) => t.Kind == DateTimeKind.Utc ? t : DateTime.SpecifyKind(t, DateTimeKind.Utc);
}
