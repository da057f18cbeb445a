using System.Diagnostics;
using System.Globalization;
using BlockBackup.Engine.Operations;
using BlockBackup.Engine.Policies;
using BlockBackup.Engine.Repository;

namespace BlockBackup.Bench;

/// <summary>
/// bench-policy: what a policy run costs beyond the backups it makes. Runs a policy of N small
/// volumes (default 4 x 16 MiB) through PolicyRunner for several nights, and the same backups
/// through BackupOperation alone, and prints both and the difference per run (listing, cadence,
/// retention planning and removal, history).
/// </summary>
internal static class PolicyBenchmark
{
    public static int Run(string[] args)
    {
        var volumes = int.Parse(Cli.Option(args, "--volumes") ?? "4", CultureInfo.InvariantCulture);
        var nights = int.Parse(Cli.Option(args, "--nights") ?? "10", CultureInfo.InvariantCulture);
        var dir = Path.Combine(Cli.Option(args, "--dir") ?? Path.GetTempPath(), "bbk-policy-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(dir);
        try
        {
            var paths = Enumerable.Range(1, volumes).Select(i => Path.Combine(dir, $"v{i}.img")).ToList();
            foreach (var (path, i) in paths.Select((p, i) => (p, i)))
            {
                VolumeGenerator.Create(path, 16L << 20, seed: i + 1);
            }

            var store = new PolicyStore(Path.Combine(dir, "config"));
            var policy = new BackupPolicy { Name = "bench", Path = paths, Repository = Path.Combine(dir, "policy-repo"), Schedule = "0 2 * * *", KeepLast = 5, MaxChainLength = 7 };
            store.Save(policy, replace: false);
            var clock = new SteppingClock(DateTimeOffset.UtcNow);
            var runner = new PolicyRunner(store, clock, _ => throw new NotSupportedException("no RBD in this benchmark"));
            var plain = BackupRepository.Open(Path.Combine(dir, "plain-repo"), create: true);

            double policyMs = 0, plainMs = 0;
            for (var night = 0; night < nights; night++)
            {
                var watch = Stopwatch.StartNew();
                var records = runner.Run(policy, null, CancellationToken.None);
                policyMs += watch.Elapsed.TotalMilliseconds;
                if (records.Any(r => !r.Succeeded))
                {
                    throw new InvalidOperationException(string.Join("; ", records.Select(r => r.Error)));
                }

                watch.Restart();
                foreach (var (path, record) in paths.Zip(records))
                {
                    BackupOperation.Run(plain, new BackupRequest { SourcePath = path, Incremental = record.Type == Engine.BackupType.Incremental, UseSnapshot = false });
                }

                plainMs += watch.Elapsed.TotalMilliseconds;
                foreach (var (path, i) in paths.Select((p, i) => (p, i)))
                {
                    VolumeGenerator.Mutate(path, 1, seed: night * 100 + i);
                }

                clock.Advance(TimeSpan.FromDays(1));
            }

            Console.WriteLine($"policy runs: {nights} nights x {volumes} volumes of 16 MiB; KeepLast 5, MaxChainLength 7");
            Console.WriteLine($"  Invoke (PolicyRunner)      {policyMs / nights,8:F1} ms per run");
            Console.WriteLine($"  the same backups alone     {plainMs / nights,8:F1} ms per run");
            Console.WriteLine($"  policy overhead            {(policyMs - plainMs) / nights,8:F1} ms per run (listing, cadence, retention, history)");
            return 0;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>A clock the benchmark moves a day per night, so that schedules and retention see the nights.</summary>
    private sealed class SteppingClock(DateTimeOffset start) : TimeProvider
    {
        private DateTimeOffset now = start;

        public void Advance(TimeSpan by) => now += by;

        public override DateTimeOffset GetUtcNow() => now;
    }
}
