using System.Diagnostics;
using System.Globalization;
using BlockBackup.Engine;
using BlockBackup.Engine.Policies;

namespace BlockBackup.Bench;

/// <summary>
/// bench-retention: plans retention over a synthetic repository listing (default 10,000 backups:
/// 20 volumes, nightly backups with a full every 7th, a few damaged), as Limit-VolumeBackup does.
/// </summary>
internal static class RetentionBenchmark
{
    public static int Run(string[] args)
    {
        var count = int.Parse(Cli.Option(args, "--backups") ?? "10000", CultureInfo.InvariantCulture);
        var volumes = int.Parse(Cli.Option(args, "--volumes") ?? "20", CultureInfo.InvariantCulture);
        var backups = Synthetic(count, volumes);
        var rule = new RetentionRule { KeepLast = 3, KeepDaily = 7, KeepWeekly = 4, KeepMonthly = 12, KeepYearly = 3, KeepWithin = TimeSpan.FromDays(2) };
        var now = backups.Max(b => b.CreatedUtc).AddHours(1);
        var zone = TimeZoneInfo.CreateCustomTimeZone("bench+01", TimeSpan.FromHours(1), "bench+01", "bench+01");

        RetentionPlanner.Plan(backups, rule, new DateTimeOffset(now), zone); // warm-up (JIT)
        var times = new List<double>();
        RetentionPlan plan = null!;
        for (var i = 0; i < 5; i++)
        {
            var clock = Stopwatch.StartNew();
            plan = RetentionPlanner.Plan(backups, rule, new DateTimeOffset(now), zone);
            times.Add(clock.Elapsed.TotalMilliseconds);
        }

        var kept = plan.Decisions.Count(d => d.Action == RetentionAction.Keep);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"retention plan: {backups.Count} backups, {volumes} volumes, rule [{rule}]: {kept} kept, {plan.RemovalOrder.Count} removed; median {times.Order().ElementAt(times.Count / 2):F1} ms, best {times.Min():F1} ms (5 runs after warm-up)"));
        return 0;
    }

    private static List<BackupInfo> Synthetic(int count, int volumes)
    {
        var start = new DateTime(2020, 1, 1, 1, 0, 0, DateTimeKind.Utc);
        var result = new List<BackupInfo>(count);
        var previous = new BackupInfo?[volumes];
        for (var i = 0; i < count; i++)
        {
            var v = i % volumes;
            var night = i / volumes;
            var volumeId = new Guid(v + 1, 0, 0, new byte[8]);
            var id = new Guid(v + 1, (short)(night >> 16), (short)night, [1, 2, 3, 4, 5, 6, 7, 8]);
            var created = start.AddDays(night).AddMinutes(v);
            var b = new BackupInfo
            {
                Id = id, VolumeId = volumeId, Name = $"nightly-{night}", CreatedUtc = created,
                ParentId = night % 7 == 0 ? null : previous[v]?.Id,
                Status = night % 97 == 13 ? BackupStatus.Damaged : BackupStatus.Available, Problem = night % 97 == 13 ? "synthetic" : null,
                WrittenBy = "BlockBackup", Repository = "/bench", Container = id.ToString(), Prefix = $"volume_{volumeId}_{created:yyyyMMddHHmmss}_backup_{id}",
            };
            result.Add(b);
            previous[v] = b;
        }

        return result;
    }
}
