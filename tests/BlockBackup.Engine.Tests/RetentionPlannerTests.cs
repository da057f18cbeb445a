using System.Globalization;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Policies;
using CsCheck;
using Xunit;

namespace BlockBackup.Engine.Tests;

/// <summary>
/// The retention planner with a fixed clock: restic's documented forget examples and its policy
/// test table, Proxmox Backup Server prune-simulator schedules, chains, damaged/incomplete/in-progress
/// backups, several volumes, time zone bucket boundaries; then properties over random histories.
/// </summary>
public sealed class RetentionPlannerTests
{
    private static readonly Guid VolumeA = new("aaaaaaaa-0000-0000-0000-000000000001");
    private static readonly Guid VolumeB = new("bbbbbbbb-0000-0000-0000-000000000002");
    private static readonly TimeZoneInfo Utc = TimeZoneInfo.Utc;
    private static readonly TimeZoneInfo UtcPlus2 = TimeZoneInfo.CreateCustomTimeZone("Test+02", TimeSpan.FromHours(2), "Test+02", "Test+02");
    private static readonly TimeZoneInfo UtcMinus5 = TimeZoneInfo.CreateCustomTimeZone("Test-05", TimeSpan.FromHours(-5), "Test-05", "Test-05");

    private int nextId;

    private BackupInfo Backup(string utc, BackupInfo? parent = null, BackupStatus status = BackupStatus.Available, Guid? volume = null, string? problem = null) =>
        Backup(ParseUtc(utc), parent, status, volume, problem);

    private BackupInfo Backup(DateTime utc, BackupInfo? parent = null, BackupStatus status = BackupStatus.Available, Guid? volume = null, string? problem = null)
    {
        var n = ++nextId;
        var id = new Guid($"00000000-0000-0000-0000-{n:x12}");
        return new BackupInfo
        {
            Id = id, VolumeId = volume ?? parent?.VolumeId ?? VolumeA, Name = $"b{n}", CreatedUtc = utc, ParentId = parent?.Id, Status = status,
            WrittenBy = "BlockBackup", Repository = "/repo", Container = $"c/{id}", Prefix = $"volume_{utc:yyyyMMddHHmmss}_backup_{id}", Problem = problem,
        };
    }

    private static DateTime ParseUtc(string s) =>
        DateTime.SpecifyKind(DateTime.Parse(s, CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal), DateTimeKind.Utc);

    private static DateTimeOffset At(string utc) => new(ParseUtc(utc));

    private static RetentionPlan Plan(IReadOnlyList<BackupInfo> backups, RetentionRule rule, string now, TimeZoneInfo? zone = null) =>
        RetentionPlanner.Plan(backups, rule, At(now), zone ?? Utc);

    private static List<DateTime> KeptTimes(RetentionPlan plan) =>
        plan.Decisions.Where(d => d.Action == RetentionAction.Keep).Select(d => d.Backup.CreatedUtc).OrderByDescending(t => t).ToList();

    private static RetentionDecision For(RetentionPlan plan, BackupInfo b) => plan.Decisions.Single(d => d.Backup.Id == b.Id);

    /// <summary>A TimeProvider frozen at one instant in one zone.</summary>
    private sealed class FixedClock(DateTimeOffset now, TimeZoneInfo zone) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
        public override TimeZoneInfo LocalTimeZone => zone;
    }

    // ---- restic's documented examples (doc/060_forget.rst) ----

    [Fact]
    public void Restic_TwelveSundays_KeepDaily4_KeepsTheLastFourSundays()
    {
        var sundays = Enumerable.Range(0, 12).Select(w => Backup(new DateTime(2019, 9, 1, 11, 0, 0, DateTimeKind.Utc).AddDays(7 * w))).ToList();

        var plan = Plan(sundays, new RetentionRule { KeepDaily = 4 }, "2019-11-18 00:00");

        Assert.Equal(sundays.Skip(8).Select(b => b.CreatedUtc).Reverse(), KeptTimes(plan));
        Assert.Equal(["daily 2019-10-27"], For(plan, sundays[8]).Reasons);
        Assert.Equal(["daily 2019-11-17", RetentionPlanner.NewestReason], For(plan, sundays[11]).Reasons);
        Assert.All(sundays.Take(8), b => Assert.Equal(RetentionAction.Remove, For(plan, b).Action));
        Assert.Equal(sundays.Take(8).Reverse().Select(b => b.Id), plan.RemovalOrder.Select(b => b.Id));
    }

    [Fact]
    public void Restic_DailyFor100Years_7Daily5Weekly12Monthly75Yearly_KeepsWhatTheDocumentationCounts()
    {
        // The documentation: "keep the most recent 7 daily snapshots and 4 last-day-of-the-week ones
        // (since the 7 dailies already include 1 weekly). Additionally, 12 or 11 last-day-of-the-month
        // snapshots ... And finally 75 or 74 last-day-of-the-year snapshots". The history ends on Sunday
        // 2025-12-28, so the 7 dailies are one whole ISO week. Its month-end count is one short of the
        // documentation's because Sunday 2025-11-30 is both a weekly and a monthly: 7 + 4 + 10 + 74.
        var start = new DateTime(1926, 1, 1, 12, 0, 0, DateTimeKind.Utc);
        var end = new DateTime(2025, 12, 28, 12, 0, 0, DateTimeKind.Utc);
        var daily = new List<BackupInfo>();
        for (var t = start; t <= end; t = t.AddDays(1))
        {
            daily.Add(Backup(t));
        }

        var plan = Plan(daily, new RetentionRule { KeepDaily = 7, KeepWeekly = 5, KeepMonthly = 12, KeepYearly = 75 }, "2026-01-01 00:00");

        var kept = plan.Decisions.Where(d => d.Action == RetentionAction.Keep).ToList();
        static bool Has(RetentionDecision d, string kind) => d.Reasons.Any(r => r.StartsWith(kind + " ", StringComparison.Ordinal));
        Assert.Equal(7, kept.Count(d => Has(d, "daily")));
        Assert.Equal(4, kept.Count(d => Has(d, "weekly") && !Has(d, "daily")));
        Assert.All(kept.Where(d => Has(d, "weekly")), d => Assert.Equal(DayOfWeek.Sunday, d.Backup.CreatedUtc.DayOfWeek));
        Assert.Equal(10, kept.Count(d => Has(d, "monthly") && !Has(d, "daily") && !Has(d, "weekly")));
        Assert.Equal(74, kept.Count(d => Has(d, "yearly") && !Has(d, "monthly") && !Has(d, "daily") && !Has(d, "weekly")));
        Assert.Equal(95, kept.Count);
        Assert.Contains(kept, d => d.Reasons.Contains("yearly 1951")); // 75 years: 2025 back to 1951
        Assert.DoesNotContain(kept, d => d.Backup.CreatedUtc.Year < 1951);
    }

    /// <summary>The snapshot times of restic's policy test table (internal/data/snapshot_policy_test.go), all UTC.</summary>
    private List<BackupInfo> ResticTestHistory()
    {
        string[] days =
        [
            "2014-09-01", "2014-09-02", "2014-09-05", "2014-09-06", "2014-09-08", "2014-09-09", "2014-09-10", "2014-09-11", "2014-09-20", "2014-09-22",
            "2014-08-08", "2014-08-10", "2014-08-12", "2014-08-13", "2014-08-13+", "2014-08-15", "2014-08-18", "2014-08-20", "2014-08-21", "2014-08-22",
            "2014-10-01", "2014-10-02", "2014-10-05", "2014-10-06", "2014-10-08", "2014-10-09", "2014-10-10", "2014-10-11", "2014-10-20", "2014-10-22",
            "2014-11-08", "2014-11-10", "2014-11-12", "2014-11-13", "2014-11-13+", "2014-11-15", "2014-11-18", "2014-11-20", "2014-11-21", "2014-11-22",
            "2015-09-01", "2015-09-02", "2015-09-05", "2015-09-06", "2015-09-08", "2015-09-09", "2015-09-10", "2015-09-11", "2015-09-20", "2015-09-22",
            "2015-08-08", "2015-08-10", "2015-08-12", "2015-08-13", "2015-08-13+", "2015-08-15", "2015-08-18", "2015-08-20", "2015-08-21", "2015-08-22",
            "2015-10-01", "2015-10-02", "2015-10-05", "2015-10-06", "2015-10-08", "2015-10-09", "2015-10-10", "2015-10-11", "2015-10-20",
            "2015-10-22", "2015-10-22", "2015-10-22", "2015-10-22", "2015-10-22", "2015-10-22",
            "2015-11-08", "2015-11-10", "2015-11-12", "2015-11-13", "2015-11-13+", "2015-11-15", "2015-11-18", "2015-11-20", "2015-11-21", "2015-11-22",
        ];
        var times = days.Select(d => ParseUtc(d.TrimEnd('+') + " 10:20:30").AddMilliseconds(d.EndsWith('+') ? 100 : 0)).ToList();
        times.AddRange(new[]
        {
            "2016-01-01 01:02:03", "2016-01-01 01:03:03", "2016-01-01 07:08:03", "2016-01-03 07:02:03", "2016-01-04 10:23:03", "2016-01-04 11:23:03",
            "2016-01-04 12:23:03", "2016-01-04 12:24:03", "2016-01-04 12:28:03", "2016-01-04 12:30:03", "2016-01-04 16:23:03", "2016-01-05 09:02:03",
            "2016-01-06 08:02:03", "2016-01-07 10:02:03", "2016-01-08 20:02:03", "2016-01-09 21:02:03", "2016-01-12 21:02:03", "2016-01-12 21:08:03",
            "2016-01-18 12:02:03",
        }.Select(ParseUtc));
        return times.Select(t => Backup(t)).ToList();
    }

    public static TheoryData<string, RetentionRule, string[]> ResticGoldenTable => new()
    {
        // policy_keep_snapshots_14
        { "Monthly6", new RetentionRule { KeepMonthly = 6 },
            ["2016-01-18 12:02:03", "2015-11-22 10:20:30", "2015-10-22 10:20:30", "2015-09-22 10:20:30", "2015-08-22 10:20:30", "2014-11-22 10:20:30"] },
        // policy_keep_snapshots_16: three years for ten counts, so the oldest snapshot is kept too
        { "Yearly10", new RetentionRule { KeepYearly = 10 }, ["2016-01-18 12:02:03", "2015-11-22 10:20:30", "2014-11-22 10:20:30", "2014-08-08 10:20:30"] },
        // policy_keep_snapshots_8
        { "Daily30", new RetentionRule { KeepDaily = 30 },
            ["2016-01-18 12:02:03", "2016-01-12 21:08:03", "2016-01-09 21:02:03", "2016-01-08 20:02:03", "2016-01-07 10:02:03", "2016-01-06 08:02:03",
             "2016-01-05 09:02:03", "2016-01-04 16:23:03", "2016-01-03 07:02:03", "2016-01-01 07:08:03", "2015-11-22 10:20:30", "2015-11-21 10:20:30",
             "2015-11-20 10:20:30", "2015-11-18 10:20:30", "2015-11-15 10:20:30", "2015-11-13 10:20:30.1", "2015-11-12 10:20:30", "2015-11-10 10:20:30",
             "2015-11-08 10:20:30", "2015-10-22 10:20:30", "2015-10-20 10:20:30", "2015-10-11 10:20:30", "2015-10-10 10:20:30", "2015-10-09 10:20:30",
             "2015-10-08 10:20:30", "2015-10-06 10:20:30", "2015-10-05 10:20:30", "2015-10-02 10:20:30", "2015-10-01 10:20:30", "2015-09-22 10:20:30"] },
        { "Last10", new RetentionRule { KeepLast = 10 },
            ["2016-01-18 12:02:03", "2016-01-12 21:08:03", "2016-01-12 21:02:03", "2016-01-09 21:02:03", "2016-01-08 20:02:03", "2016-01-07 10:02:03",
             "2016-01-06 08:02:03", "2016-01-05 09:02:03", "2016-01-04 16:23:03", "2016-01-04 12:30:03"] },
        { "Weekly2", new RetentionRule { KeepWeekly = 2 }, ["2016-01-18 12:02:03", "2016-01-12 21:08:03"] },
        { "Hourly20", new RetentionRule { KeepHourly = 20 },
            ["2016-01-18 12:02:03", "2016-01-12 21:08:03", "2016-01-09 21:02:03", "2016-01-08 20:02:03", "2016-01-07 10:02:03", "2016-01-06 08:02:03",
             "2016-01-05 09:02:03", "2016-01-04 16:23:03", "2016-01-04 12:30:03", "2016-01-04 11:23:03", "2016-01-04 10:23:03", "2016-01-03 07:02:03",
             "2016-01-01 07:08:03", "2016-01-01 01:03:03", "2015-11-22 10:20:30", "2015-11-21 10:20:30", "2015-11-20 10:20:30", "2015-11-18 10:20:30",
             "2015-11-15 10:20:30", "2015-11-13 10:20:30.1"] },
    };

    [Theory]
    [MemberData(nameof(ResticGoldenTable))]
    public void Restic_PolicyTestTable(string name, RetentionRule rule, string[] expectedKept)
    {
        var plan = Plan(ResticTestHistory(), rule, "2016-01-19 00:00");

        Assert.True(expectedKept.Select(ParseUtc).SequenceEqual(KeptTimes(plan)), $"{name}: kept {string.Join(", ", KeptTimes(plan).Select(t => t.ToString("yyyy-MM-dd HH:mm:ss.f", CultureInfo.InvariantCulture)))}");
    }

    [Fact]
    public void Restic_Yearly10_MarksTheOldestBackupAsOldestYearly()
    {
        var history = ResticTestHistory();
        var plan = Plan(history, new RetentionRule { KeepYearly = 10 }, "2016-01-19 00:00");

        var oldest = history.MinBy(b => b.CreatedUtc)!;
        Assert.Equal(["oldest yearly 2014"], For(plan, oldest).Reasons);
    }

    [Fact]
    public void RulesAreOred_OneBackupFillsABucketOfEveryRule_UnlikeProxmoxBackupServer()
    {
        // Three backups a day. restic: last 3 are today's; daily 2 = today's newest (already kept) and
        // yesterday's newest: 4 kept. PBS would skip today's day for keep-daily (covered by keep-last)
        // and keep two earlier days (5 kept). BlockBackup follows restic.
        var backups = new List<BackupInfo>();
        foreach (var day in Enumerable.Range(1, 4))
        {
            foreach (var hour in new[] { 6, 12, 18 })
            {
                backups.Add(Backup(new DateTime(2026, 3, day, hour, 0, 0, DateTimeKind.Utc)));
            }
        }

        var plan = Plan(backups, new RetentionRule { KeepLast = 3, KeepDaily = 2 }, "2026-03-05 00:00");

        Assert.Equal(new[] { "2026-03-04 18:00", "2026-03-04 12:00", "2026-03-04 06:00", "2026-03-03 18:00" }.Select(ParseUtc), KeptTimes(plan));
        Assert.Equal(["last 1", "daily 2026-03-04", RetentionPlanner.NewestReason], For(plan, backups[^1]).Reasons);
        Assert.Equal(["last 3"], For(plan, backups[^3]).Reasons);
    }

    // ---- Proxmox Backup Server prune simulator schedules (one rule at a time, history long enough) ----

    public static TheoryData<string, string, int, string, RetentionRule, string[]> PbsSimulatorTable => new()
    {
        // schedule "*:00" (every hour) for three days, keep-hourly 5: the last five hours
        { "hourly", "2026-06-01 00:00", 72, "01:00:00", new RetentionRule { KeepHourly = 5 },
            ["2026-06-03 23:00", "2026-06-03 22:00", "2026-06-03 21:00", "2026-06-03 20:00", "2026-06-03 19:00"] },
        // schedule "0/6:00" (four a day) for ten days, keep-daily 3: the 18:00 backup of the last three days
        { "daily", "2026-06-01 00:00", 40, "06:00:00", new RetentionRule { KeepDaily = 3 }, ["2026-06-10 18:00", "2026-06-09 18:00", "2026-06-08 18:00"] },
        // daily 21:00 for 5 weeks from Monday 2026-06-01, keep-weekly 3: the Sundays
        { "weekly", "2026-06-01 21:00", 35, "1.00:00:00", new RetentionRule { KeepWeekly = 3 }, ["2026-07-05 21:00", "2026-06-28 21:00", "2026-06-21 21:00"] },
        // daily 21:00 for 120 days, keep-monthly 3: the last day of each month (the current month's newest first)
        { "monthly", "2026-01-01 21:00", 120, "1.00:00:00", new RetentionRule { KeepMonthly = 3 }, ["2026-04-30 21:00", "2026-03-31 21:00", "2026-02-28 21:00"] },
        // weekly on Mondays for three years, keep-yearly 2
        { "yearly", "2024-01-01 12:00", 156, "7.00:00:00", new RetentionRule { KeepYearly = 2 }, ["2026-12-21 12:00", "2025-12-29 12:00"] },
    };

    [Theory]
    [MemberData(nameof(PbsSimulatorTable))]
    public void Pbs_SimulatorSchedules(string name, string first, int count, string every, RetentionRule rule, string[] expectedKept)
    {
        var step = TimeSpan.Parse(every, CultureInfo.InvariantCulture);
        var backups = Enumerable.Range(0, count).Select(i => Backup(ParseUtc(first) + step * i)).ToList();

        var plan = Plan(backups, rule, (ParseUtc(first) + step * count).ToString("u", CultureInfo.InvariantCulture));

        Assert.True(expectedKept.Select(ParseUtc).SequenceEqual(KeptTimes(plan)), $"{name}: kept {string.Join(", ", KeptTimes(plan).Select(t => t.ToString("u", CultureInfo.InvariantCulture)))}");
    }

    // ---- KeepWithin ----

    [Fact]
    public void KeepWithin_KeepsWhatWasMadeWithinTheSpanBeforeNow_NotRelativeToTheNewestBackup()
    {
        var backups = Enumerable.Range(0, 20).Select(i => Backup(new DateTime(2026, 5, 1, 0, 0, 0, DateTimeKind.Utc).AddHours(12 * i))).ToList();
        // newest: 2026-05-10 12:00; now two days later; within 3 days: after 2026-05-09 12:00 (strictly)
        var plan = Plan(backups, new RetentionRule { KeepWithin = TimeSpan.FromDays(3) }, "2026-05-12 12:00");

        Assert.Equal(new[] { "2026-05-10 12:00", "2026-05-10 00:00" }.Select(ParseUtc), KeptTimes(plan));
        Assert.Equal(["within 3.00:00:00"], For(plan, backups[^2]).Reasons);
        Assert.Equal(RetentionAction.Remove, For(plan, backups[^3]).Action); // exactly 3 days old
    }

    [Fact]
    public void KeepWithin_SevenDays_ReasonUsesTheInvariantSpanFormat()
    {
        var b = Backup("2026-11-30 08:00");
        var plan = Plan([b], new RetentionRule { KeepWithin = TimeSpan.FromDays(7) }, "2026-12-01 00:00");
        Assert.Equal(["within 7.00:00:00", RetentionPlanner.NewestReason], For(plan, b).Reasons);
    }

    [Fact]
    public void AsOfAnEarlierTime_BackupsMadeLaterAreKeptAndFillNoBucket()
    {
        var early = Backup("2026-01-01 10:00");
        var middle = Backup("2026-01-02 10:00");
        var later = Backup("2026-01-05 10:00");

        var plan = Plan([early, middle, later], new RetentionRule { KeepLast = 1 }, "2026-01-03 00:00");

        // As of then, middle was the newest backup: protected as such (later is dated after the time evaluated).
        Assert.Equal(["last 1", RetentionPlanner.NewestNotFutureReason], For(plan, middle).Reasons);
        Assert.Equal(RetentionAction.Remove, For(plan, early).Action);
        Assert.Equal(RetentionAction.Keep, For(plan, later).Action);
        Assert.Contains(For(plan, later).Reasons, r => r.StartsWith("made after 2026-01-03 00:00:00Z", StringComparison.Ordinal));
    }

    [Fact]
    public void ABackupDatedInTheFutureIsReportedAndNeverTakesTheNewestProtectionFromTheRealNewest()
    {
        // F1 full, X made by a clock 30 days ahead (an incremental of F1), then R1 and R2 by correct
        // clocks (incrementals of X, the newest by date): KeepWithin 1 hour keeps nothing made recently
        // but R2, which is the newest not dated in the future, and the chain it needs.
        var f1 = Backup("2026-03-01 08:00");
        var x = Backup("2026-03-31 09:00", f1);
        var r1 = Backup("2026-03-01 09:00", x);
        var r2 = Backup("2026-03-01 10:00", r1);

        var plan = Plan([f1, x, r1, r2], new RetentionRule { KeepWithin = TimeSpan.FromMinutes(30) }, "2026-03-01 11:00");

        Assert.Equal([x.Id], plan.FutureDated.Select(b => b.Id));
        Assert.Equal([RetentionPlanner.NewestNotFutureReason], For(plan, r2).Reasons);
        Assert.Equal([$"needed by {r2.Id}"], For(plan, r1).Reasons);
        Assert.Contains(RetentionPlanner.NewestReason, For(plan, x).Reasons);
        Assert.Equal(RetentionAction.Keep, For(plan, f1).Action); // needed by x
        Assert.Empty(plan.RemovalOrder);
        var warning = RetentionPlanner.FutureDatedWarning(x, At("2026-03-01 11:00"));
        Assert.Contains($"Backup {x.Id}", warning, StringComparison.Ordinal);
        Assert.Contains("2026-03-31 09:00:00Z", warning, StringComparison.Ordinal);
        Assert.Contains("29.9 days after 2026-03-01 11:00:00Z", warning, StringComparison.Ordinal);
    }

    [Fact]
    public void ABackupWithinTheClockToleranceIsNotDatedInTheFuture()
    {
        var older = Backup("2026-03-01 08:00");
        var skewed = Backup("2026-03-01 11:04");   // 4 minutes ahead: a small skew between hosts

        var plan = Plan([older, skewed], new RetentionRule { KeepWithin = TimeSpan.FromMinutes(30) }, "2026-03-01 11:00");

        Assert.Empty(plan.FutureDated);
        Assert.Equal(RetentionAction.Remove, For(plan, older).Action); // no second "newest" for it
        Assert.Contains(RetentionPlanner.NewestReason, For(plan, skewed).Reasons);
    }

    [Fact]
    public void OnlyFutureDatedBackupsLeaveNothingElseToProtect()
    {
        var x = Backup("2026-04-01 00:00");
        var plan = Plan([x], new RetentionRule { KeepLast = 1 }, "2026-03-01 11:00");
        Assert.Equal([x.Id], plan.FutureDated.Select(b => b.Id));
        Assert.Equal(RetentionAction.Keep, For(plan, x).Action);
        Assert.DoesNotContain(RetentionPlanner.NewestNotFutureReason, For(plan, x).Reasons);
    }

    [Fact]
    public void TimeProviderOverload_UsesTheClocksTimeAndZone()
    {
        var late = Backup("2026-11-30 23:30");
        var early = Backup("2026-11-30 12:00");
        var clock = new FixedClock(At("2026-12-02 00:00"), UtcPlus2);

        var plan = RetentionPlanner.Plan([early, late], new RetentionRule { KeepDaily = 1 }, clock);

        Assert.Equal(plan.EvaluatedAt, clock.GetUtcNow());
        Assert.Equal(["daily 2026-12-01", RetentionPlanner.NewestReason], For(plan, late).Reasons); // 01:30 on Dec 1 in UTC+2
        Assert.Equal(RetentionAction.Remove, For(plan, early).Action);
    }

    // ---- chains ----

    [Fact]
    public void KeptIncremental_KeepsItsWholeChain_AndTheRestIsRemovedChildrenFirst()
    {
        var full1 = Backup("2026-01-01 01:00");
        var inc1 = Backup("2026-01-02 01:00", full1);
        var inc2 = Backup("2026-01-03 01:00", inc1);
        var full2 = Backup("2026-01-04 01:00");
        var inc3 = Backup("2026-01-05 01:00", full2);
        var inc4 = Backup("2026-01-06 01:00", inc3);

        var plan = Plan([full1, inc1, inc2, full2, inc3, inc4], new RetentionRule { KeepLast = 1 }, "2026-01-07 00:00");

        Assert.Equal(["last 1", RetentionPlanner.NewestReason], For(plan, inc4).Reasons);
        Assert.Equal([$"needed by {inc4.Id}"], For(plan, inc3).Reasons);
        Assert.Equal([$"needed by {inc3.Id}"], For(plan, full2).Reasons);
        Assert.Equal([inc2.Id, inc1.Id, full1.Id], plan.RemovalOrder.Select(b => b.Id));
        Assert.All([full1, inc1, inc2], b => Assert.Equal([RetentionPlanner.NoRuleReason], For(plan, b).Reasons));
    }

    [Fact]
    public void MonthlyIncrementalOfALongChain_ForcesKeepingEveryParent()
    {
        // One full on Jan 1, then a nightly incremental chain through March; keep-monthly 2 keeps the
        // chain's Feb 28 and Mar 31 backups, which need every earlier link back to the full.
        var chain = new List<BackupInfo> { Backup("2026-01-01 02:00") };
        for (var day = 1; day < 90; day++)
        {
            chain.Add(Backup(ParseUtc("2026-01-01 02:00").AddDays(day), chain[^1]));
        }

        var plan = Plan(chain, new RetentionRule { KeepMonthly = 2 }, "2026-04-01 00:00");

        Assert.All(chain, b => Assert.Equal(RetentionAction.Keep, For(plan, b).Action));
        Assert.Contains("monthly 2026-02", For(plan, chain.Single(b => b.CreatedUtc == ParseUtc("2026-02-28 02:00"))).Reasons);
        Assert.Equal([$"needed by {chain[1].Id}"], For(plan, chain[0]).Reasons);
        Assert.Empty(plan.RemovalOrder);
    }

    [Fact]
    public void BranchedChain_OnlyTheKeptBranchKeepsItsParents()
    {
        var full = Backup("2026-02-01 00:00");
        var branchA = Backup("2026-02-02 00:00", full);
        var branchA2 = Backup("2026-02-03 00:00", branchA);
        var branchB = Backup("2026-02-04 00:00", full);

        var plan = Plan([full, branchA, branchA2, branchB], new RetentionRule { KeepLast = 1 }, "2026-02-05 00:00");

        Assert.Equal(RetentionAction.Keep, For(plan, full).Action);
        Assert.Equal([$"needed by {branchB.Id}"], For(plan, full).Reasons);
        Assert.Equal([branchA2.Id, branchA.Id], plan.RemovalOrder.Select(b => b.Id));
    }

    [Fact]
    public void RemovalOrder_DependentsFirstEvenWhenTheirClockSaysTheyAreOlder()
    {
        var full = Backup("2026-02-01 10:00");
        var skewed = Backup("2026-02-01 09:00", full); // a host clock behind: the child looks older than its parent
        var newest = Backup("2026-02-10 00:00");

        var plan = Plan([full, skewed, newest], new RetentionRule { KeepLast = 1 }, "2026-02-11 00:00");

        Assert.Equal([skewed.Id, full.Id], plan.RemovalOrder.Select(b => b.Id));
    }

    // ---- damaged, incomplete, in progress ----

    [Fact]
    public void DamagedAndIncomplete_AreReportedAndKept_FillNoBucket()
    {
        var d1 = Backup("2026-04-01 01:00");
        var d2 = Backup("2026-04-02 01:00");
        var d3 = Backup("2026-04-03 01:00");
        var damaged = Backup("2026-04-04 01:00", status: BackupStatus.Damaged, problem: "sha256file does not parse");
        var incomplete = Backup("2026-04-04 03:00", status: BackupStatus.Incomplete);

        var plan = Plan([d1, d2, d3, damaged, incomplete], new RetentionRule { KeepDaily = 2 }, "2026-04-05 00:00");

        Assert.Equal(["damaged: sha256file does not parse"], For(plan, damaged).Reasons);
        Assert.Equal([RetentionPlanner.IncompleteReason], For(plan, incomplete).Reasons);
        Assert.Equal(RetentionAction.Keep, For(plan, damaged).Action);
        Assert.Equal(["daily 2026-04-03", RetentionPlanner.NewestReason], For(plan, d3).Reasons);
        Assert.Equal(["daily 2026-04-02"], For(plan, d2).Reasons);
        Assert.Equal(RetentionAction.Remove, For(plan, d1).Action);
    }

    [Fact]
    public void RemoveDamaged_RemovesDamagedAndIncomplete_UnlessAKeptBackupNeedsThem()
    {
        var full = Backup("2026-04-01 01:00", status: BackupStatus.Damaged, problem: "metadata checksum mismatch");
        var child = Backup("2026-04-02 01:00", full);
        var lone = Backup("2026-04-02 05:00", status: BackupStatus.Damaged, problem: "no objects");
        var incomplete = Backup("2026-04-02 06:00", status: BackupStatus.Incomplete);
        var creating = Backup("2026-04-02 07:00", status: BackupStatus.Creating);

        var plan = Plan([full, child, lone, incomplete, creating], new RetentionRule { KeepLast = 1, RemoveDamaged = true }, "2026-04-03 00:00");

        Assert.Equal(["damaged: metadata checksum mismatch", $"needed by {child.Id}"], For(plan, full).Reasons);
        Assert.Equal(RetentionAction.Keep, For(plan, full).Action);
        Assert.Equal(["damaged: no objects", RetentionPlanner.NoRuleReason], For(plan, lone).Reasons);
        Assert.Equal(RetentionAction.Remove, For(plan, lone).Action);
        Assert.Equal(RetentionAction.Remove, For(plan, incomplete).Action);
        Assert.Equal([RetentionPlanner.InProgressReason], For(plan, creating).Reasons);
        Assert.Equal(RetentionAction.Keep, For(plan, creating).Action);
    }

    [Fact]
    public void NewestAvailable_IsNeverRemoved_EvenWhenOnlyDamagedBackupsAreNewer()
    {
        var old = Backup("2025-01-01 00:00");
        var damaged = Backup("2026-01-01 00:00", status: BackupStatus.Damaged, problem: "x");

        var plan = Plan([old, damaged], new RetentionRule { KeepWithin = TimeSpan.FromDays(1), RemoveDamaged = true }, "2026-06-01 00:00");

        Assert.Equal([RetentionPlanner.NewestReason], For(plan, old).Reasons);
        Assert.Equal(RetentionAction.Remove, For(plan, damaged).Action);
    }

    // ---- several volumes, selection ----

    [Fact]
    public void SeveralVolumes_AreRetainedIndependently()
    {
        var backups = new List<BackupInfo>();
        for (var day = 1; day <= 5; day++)
        {
            backups.Add(Backup(new DateTime(2026, 7, day, 1, 0, 0, DateTimeKind.Utc), volume: VolumeA));
            backups.Add(Backup(new DateTime(2026, 7, day * 2, 3, 0, 0, DateTimeKind.Utc), volume: VolumeB));
        }

        var plan = Plan(backups, new RetentionRule { KeepLast = 2 }, "2026-08-01 00:00");

        foreach (var volume in new[] { VolumeA, VolumeB })
        {
            var ofVolume = backups.Where(b => b.VolumeId == volume).OrderByDescending(b => b.CreatedUtc).ToList();
            Assert.Equal(ofVolume.Take(2).Select(b => b.Id), plan.Decisions.Where(d => d.VolumeId == volume && d.Action == RetentionAction.Keep).Select(d => d.BackupId).Reverse());
        }

        // volumes in order of first appearance, newest first within each
        Assert.Equal(backups.Where(b => b.VolumeId == VolumeA).Take(3).Reverse().Concat(backups.Where(b => b.VolumeId == VolumeB).Take(3).Reverse()).Select(b => b.Id),
            plan.RemovalOrder.Select(b => b.Id));
    }

    [Fact]
    public void Selection_OnlySelectedBackupsAreSubjectToTheRule_AndTheOthersKeepTheirParents()
    {
        var full = Backup("2026-01-01 00:00");
        var inc = Backup("2026-01-02 00:00", full);
        var other = Backup("2026-01-03 00:00");
        var newest = Backup("2026-01-04 00:00");

        var selected = new HashSet<Guid> { full.Id, other.Id };
        var plan = RetentionPlanner.Plan([full, inc, other, newest], new RetentionRule { KeepLast = 1 }, At("2026-02-01 00:00"), Utc, b => selected.Contains(b.Id));

        Assert.Equal(["last 1"], For(plan, other).Reasons);
        Assert.Equal([$"needed by {inc.Id}"], For(plan, full).Reasons);
        Assert.Equal([RetentionPlanner.NotSelectedReason], For(plan, inc).Reasons);
        Assert.Empty(plan.RemovalOrder);
    }

    // ---- time zones ----

    public static TheoryData<string, string[]> DayBoundaryTable => new()
    {
        // A 2026-11-29 12:00Z, B 2026-11-30 23:30Z, C 2026-12-01 00:30Z; keep-daily 2
        { "Utc", ["daily 2026-12-01", "daily 2026-11-30", ""] },           // C, B kept; A removed
        { "Test+02", ["daily 2026-12-01", "", "daily 2026-11-29"] },       // B and C both on Dec 1: A kept instead of B
        { "Test-05", ["daily 2026-11-30", "", "daily 2026-11-29"] },       // B and C both on Nov 30
    };

    [Theory]
    [MemberData(nameof(DayBoundaryTable))]
    public void DayBuckets_AreLocalDaysOfTheZoneGiven(string zoneId, string[] reasonsForCBA)
    {
        var zone = zoneId switch { "Test+02" => UtcPlus2, "Test-05" => UtcMinus5, _ => Utc };
        var a = Backup("2026-11-29 12:00");
        var b = Backup("2026-11-30 23:30");
        var c = Backup("2026-12-01 00:30");

        var plan = Plan([a, b, c], new RetentionRule { KeepDaily = 2 }, "2026-12-02 00:00", zone);

        var actual = new[] { c, b, a }.Select(x => string.Join("", For(plan, x).Reasons.Where(r => r.StartsWith("daily", StringComparison.Ordinal)))).ToArray();
        Assert.Equal(reasonsForCBA, actual);
        Assert.Equal(RetentionAction.Keep, For(plan, c).Action);
    }

    [Fact]
    public void WeekBuckets_AreIsoWeeksStartingMondayLocal_AcrossTheYearEnd()
    {
        // 2026 has 53 ISO weeks: Thu 2026-12-31 and Fri 2027-01-01 are both in 2026-W53.
        var thursday = Backup("2026-12-31 12:00");
        var friday = Backup("2027-01-01 12:00");
        // Sunday 2027-01-03 23:30Z is Monday 2027-01-04 01:30 in UTC+2: week 2027-W01 there.
        var sundayNight = Backup("2027-01-03 23:30");

        var utcPlan = Plan([thursday, friday, sundayNight], new RetentionRule { KeepWeekly = 2 }, "2027-01-10 00:00");
        Assert.Equal(["weekly 2026-W53", RetentionPlanner.NewestReason], For(utcPlan, sundayNight).Reasons);
        Assert.Equal(["oldest weekly 2026-W53"], For(utcPlan, thursday).Reasons);
        Assert.Equal(RetentionAction.Remove, For(utcPlan, friday).Action);

        var eastPlan = Plan([thursday, friday, sundayNight], new RetentionRule { KeepWeekly = 2 }, "2027-01-10 00:00", UtcPlus2);
        Assert.Equal(["weekly 2027-W01", RetentionPlanner.NewestReason], For(eastPlan, sundayNight).Reasons);
        Assert.Equal(["weekly 2026-W53"], For(eastPlan, friday).Reasons);
        Assert.Equal(RetentionAction.Remove, For(eastPlan, thursday).Action);
    }

    [Fact]
    public void HourBuckets_FollowTheZonesOffset_IncludingHalfHourZones()
    {
        var india = TimeZoneInfo.CreateCustomTimeZone("Test+0530", new TimeSpan(5, 30, 0), "Test+0530", "Test+0530");
        var at0010 = Backup("2026-03-01 00:10"); // 05:40 local
        var at0040 = Backup("2026-03-01 00:40"); // 06:10 local
        var at0050 = Backup("2026-03-01 00:50"); // 06:20 local

        var plan = Plan([at0010, at0040, at0050], new RetentionRule { KeepHourly = 1 }, "2026-03-02 00:00", india);

        Assert.Equal(["hourly 2026-03-01 06:00", RetentionPlanner.NewestReason], For(plan, at0050).Reasons);
        Assert.Equal(RetentionAction.Remove, For(plan, at0040).Action);
    }

    // ---- validation ----

    [Fact]
    public void ARuleThatKeepsNothing_IsRefused()
    {
        var ex = Assert.Throws<BackupException>(() => Plan([Backup("2026-01-01")], new RetentionRule(), "2026-01-02"));
        Assert.Equal("RetentionRuleKeepsNothing", ex.ErrorId);
        Assert.Equal(BackupErrorKind.InvalidArgument, ex.Kind);

        Assert.Equal("RetentionRuleKeepsNothing", Assert.Throws<BackupException>(() => new RetentionRule { RemoveDamaged = true }.Validate()).ErrorId);
        Assert.Equal("RetentionRuleInvalid", Assert.Throws<BackupException>(() => new RetentionRule { KeepDaily = -1 }.Validate()).ErrorId);
        Assert.Equal("RetentionRuleInvalid", Assert.Throws<BackupException>(() => new RetentionRule { KeepWithin = TimeSpan.Zero }.Validate()).ErrorId);
        new RetentionRule { KeepWithin = TimeSpan.FromHours(1) }.Validate();
    }

    [Fact]
    public void EmptyHistory_GivesAnEmptyPlan()
    {
        var plan = Plan([], new RetentionRule { KeepLast = 1 }, "2026-01-01");
        Assert.Empty(plan.Decisions);
        Assert.Empty(plan.RemovalOrder);
    }

    // ---- properties over random histories and rules ----

    private sealed record Case(List<BackupInfo> Backups, RetentionRule Rule, DateTimeOffset Now, TimeZoneInfo Zone);

    private static readonly DateTime Epoch = new(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc);

    private static readonly Gen<RetentionRule> GenRule =
        Gen.Select(Gen.Int[0, 6].Array[6], Gen.Int[0, 60], Gen.Bool)
            .Select(t => new RetentionRule
            {
                KeepLast = t.Item1[0], KeepHourly = t.Item1[1], KeepDaily = t.Item1[2], KeepWeekly = t.Item1[3], KeepMonthly = t.Item1[4], KeepYearly = t.Item1[5],
                KeepWithin = t.Item2 == 0 && t.Item1.All(c => c == 0) ? TimeSpan.FromHours(1) : t.Item2 % 3 == 0 ? null : TimeSpan.FromDays(t.Item2) / 4,
                RemoveDamaged = t.Item3,
            });

    /// <summary>One volume's history: a backup every few hours to weeks; fulls now and then, otherwise an incremental of an earlier backup (usually the previous).</summary>
    private static Gen<List<BackupInfo>> GenVolume(Guid volume) =>
        Gen.Select(Gen.Int[1, 24 * 20], Gen.Int[0, 9], Gen.Int[0, 19]).Array[0, 40].Select(steps =>
        {
            var list = new List<BackupInfo>();
            var t = Epoch;
            var n = 0;
            foreach (var (hours, parentPick, statusPick) in steps)
            {
                t = t.AddHours(hours).AddMinutes(hours % 60);
                n++;
                var id = new Guid($"{volume.ToString()[..8]}-0000-0000-0000-{n:x12}");
                Guid? parent = list.Count == 0 || parentPick == 0 ? null : list[parentPick < 8 ? list.Count - 1 : (hours * 31) % list.Count].Id;
                var status = statusPick switch { 0 => BackupStatus.Damaged, 1 => BackupStatus.Incomplete, 2 => BackupStatus.Creating, _ => BackupStatus.Available };
                list.Add(new BackupInfo
                {
                    Id = id, VolumeId = volume, CreatedUtc = t, ParentId = parent, Status = status, Problem = status == BackupStatus.Damaged ? "bad" : null,
                    WrittenBy = "BlockBackup", Repository = "/repo", Container = id.ToString(), Prefix = $"volume_{t:yyyyMMddHHmmss}_backup_{id}",
                });
            }

            return list;
        });

    private static readonly Gen<Case> GenCase =
        Gen.Select(GenVolume(VolumeA), GenVolume(VolumeB), GenRule, Gen.Int[0, 24 * 400], Gen.Int[-12, 14])
            .Select(t =>
            {
                // Interleave the volumes by time, as a repository listing does.
                var all = t.Item1.Concat(t.Item2).OrderBy(b => b.CreatedUtc).ToList();
                var zone = TimeZoneInfo.CreateCustomTimeZone($"P{t.Item5}", TimeSpan.FromHours(t.Item5), $"P{t.Item5}", $"P{t.Item5}");
                return new Case(all, t.Item3, new DateTimeOffset(Epoch.AddHours(t.Item4)), zone);
            });

    /// <summary>Runs the properties over a fixed, bounded sequence of random cases (reproducible: the PCG stream and seed are fixed).</summary>
    private static void ForRandomCases(Action<Case, RetentionPlan> property, int count = 400)
    {
        var pcg = new PCG(9, 20261130);
        for (var i = 0; i < count; i++)
        {
            var @case = GenCase.Generate(pcg, null, out _);
            var plan = RetentionPlanner.Plan(@case.Backups, @case.Rule, @case.Now, @case.Zone);
            try
            {
                property(@case, plan);
            }
            catch (Exception ex)
            {
                throw new InvalidOperationException($"case {i}: rule {@case.Rule}, now {@case.Now:u}, zone {@case.Zone.BaseUtcOffset}, {@case.Backups.Count} backups:\n" +
                    string.Join("\n", plan.Decisions.Select(d => $"{d.Backup.Id} {d.Backup.CreatedUtc:u} {d.Backup.Status} parent {d.Backup.ParentId} -> {d.Action}: {string.Join("; ", d.Reasons)}")), ex);
            }
        }
    }

    [Fact]
    public void Property_OneDecisionPerBackup_InInputOrder()
    {
        ForRandomCases((c, plan) => Assert.Equal(c.Backups.Select(b => b.Id), plan.Decisions.Select(d => d.BackupId)));
    }

    [Fact]
    public void Property_EveryKeptBackupsWholeChainIsKept()
    {
        ForRandomCases((c, plan) =>
        {
            var byId = plan.Decisions.GroupBy(d => d.BackupId).ToDictionary(g => g.Key, g => g.First());
            foreach (var kept in plan.Decisions.Where(d => d.Action == RetentionAction.Keep))
            {
                for (var parent = kept.Backup.ParentId; parent is { } p && byId.TryGetValue(p, out var d); parent = d.Backup.ParentId)
                {
                    Assert.Equal(RetentionAction.Keep, d.Action);
                }
            }
        });
    }

    [Fact]
    public void Property_TheNewestAvailableBackupOfEachVolumeIsKept()
    {
        ForRandomCases((c, plan) =>
        {
            foreach (var volume in c.Backups.Where(b => b.Status == BackupStatus.Available).GroupBy(b => b.VolumeId))
            {
                var newest = volume.MaxBy(b => b.CreatedUtc)!;
                Assert.Equal(RetentionAction.Keep, For(plan, newest).Action);
            }
        });
    }

    [Fact]
    public void Property_ABackupIsRemovedOnlyWhenNoRuleKeepsItAndNothingKeptNeedsIt()
    {
        int removedTotal = 0, neededTotal = 0, damagedRemoved = 0;
        ForRandomCases((c, plan) =>
        {
            removedTotal += plan.RemovalOrder.Count;
            neededTotal += plan.Decisions.Count(d => d.Reasons.Any(r => r.StartsWith("needed by ", StringComparison.Ordinal)));
            damagedRemoved += plan.RemovalOrder.Count(b => b.Status != BackupStatus.Available);
            var keptParents = plan.Decisions.Where(d => d.Action == RetentionAction.Keep && d.Backup.ParentId is not null).Select(d => d.Backup.ParentId!.Value).ToHashSet();
            var mustKeep = IndependentRuleKeeps(c);
            foreach (var d in plan.Decisions)
            {
                if (d.Action == RetentionAction.Remove)
                {
                    Assert.DoesNotContain(d.BackupId, keptParents);
                    Assert.DoesNotContain(d.BackupId, mustKeep);
                    Assert.NotEqual(BackupStatus.Creating, d.Backup.Status);
                    Assert.True(d.Backup.Status == BackupStatus.Available || c.Rule.RemoveDamaged, "a damaged or incomplete backup is removed only with RemoveDamaged");
                    Assert.Equal(RetentionPlanner.NoRuleReason, d.Reasons[^1]);
                }
                else
                {
                    Assert.NotEmpty(d.Reasons);
                    Assert.DoesNotContain(RetentionPlanner.NoRuleReason, d.Reasons);
                }
            }

            Assert.All(mustKeep, id => Assert.Equal(RetentionAction.Keep, plan.Decisions.First(d => d.BackupId == id).Action));
        });

        // The random cases exercise every path, not only "keep everything".
        Assert.True(removedTotal > 1000 && neededTotal > 500 && damagedRemoved > 50, $"removed {removedTotal}, needed {neededTotal}, damaged removed {damagedRemoved}");
    }

    [Fact]
    public void Property_RemovalOrderRemovesEveryRemovedBackupOnce_NeverAParentBeforeItsDependents()
    {
        ForRandomCases((c, plan) =>
        {
            var removed = plan.Decisions.Where(d => d.Action == RetentionAction.Remove).Select(d => d.BackupId).ToList();
            Assert.Equal(removed.Order(), plan.RemovalOrder.Select(b => b.Id).Order());
            var position = plan.RemovalOrder.Select((b, i) => (b.Id, i)).ToDictionary(x => x.Id, x => x.i);
            foreach (var b in plan.RemovalOrder)
            {
                if (b.ParentId is { } p && position.TryGetValue(p, out var parentAt))
                {
                    Assert.True(position[b.Id] < parentAt, $"parent {p} is removed before its dependent {b.Id}");
                }
            }
        });
    }

    /// <summary>
    /// What the rule itself must keep, computed independently of the planner from the plain reading
    /// of restic's rules: the n newest candidates; the newest candidate of each of the n newest local
    /// hours/days/ISO weeks/months/years that have one; every candidate within the span before now.
    /// </summary>
    private static HashSet<Guid> IndependentRuleKeeps(Case c)
    {
        var keep = new HashSet<Guid>();
        var now = c.Now.UtcDateTime;
        foreach (var volume in c.Backups.GroupBy(b => b.VolumeId))
        {
            var candidates = volume.Where(b => b.Status == BackupStatus.Available && b.CreatedUtc <= now)
                .OrderByDescending(b => b.CreatedUtc).ThenByDescending(b => b.Prefix, StringComparer.Ordinal).ToList();
            keep.UnionWith(candidates.Take(c.Rule.KeepLast).Select(b => b.Id));
            foreach (var (count, bucket) in new (int, Func<DateTime, string>)[]
            {
                (c.Rule.KeepHourly, t => t.ToString("yyyyMMddHH", CultureInfo.InvariantCulture)),
                (c.Rule.KeepDaily, t => t.ToString("yyyyMMdd", CultureInfo.InvariantCulture)),
                (c.Rule.KeepWeekly, t => $"{ISOWeek.GetYear(t)}W{ISOWeek.GetWeekOfYear(t)}"),
                (c.Rule.KeepMonthly, t => t.ToString("yyyyMM", CultureInfo.InvariantCulture)),
                (c.Rule.KeepYearly, t => t.ToString("yyyy", CultureInfo.InvariantCulture)),
            })
            {
                keep.UnionWith(candidates.GroupBy(b => bucket(TimeZoneInfo.ConvertTimeFromUtc(b.CreatedUtc, c.Zone))).Take(count).Select(g => g.First().Id));
            }

            if (c.Rule.KeepWithin is { } within)
            {
                keep.UnionWith(candidates.Where(b => b.CreatedUtc > now - within).Select(b => b.Id));
            }
        }

        return keep;
    }
}
