using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace BlockBackup.Bench;

/// <summary>
/// BlockBackup against Cinder's own s3 (or swift) backup driver on the same object store and the
/// same volume: full backup and restore, each in its own process (elapsed time, peak RSS), in
/// Cinder's default layout (50 MiB objects), with the restored volume compared byte for byte.
/// The store is named by BLOCKBACKUP_S3_ENDPOINT/_ACCESS_KEY/_SECRET_KEY (or
/// BLOCKBACKUP_SWIFT_AUTH_URL/_USER/_KEY), as tests/ceph/rgw-start.sh prints them.
/// </summary>
internal static partial class ObjectStoreBenchmark
{
    public static int Run(string[] args)
    {
        var kind = Cli.Option(args, "--kind") ?? "s3";
        var size = Cli.ParseSize(Cli.Option(args, "--size") ?? "512M");
        var compression = Cli.Option(args, "--compression") ?? "zlib";
        var dir = Cli.Option(args, "--dir") ?? Path.Combine(Path.GetTempPath(), "bbk-bench-objstore");
        var runs = int.Parse(Cli.Option(args, "--runs") ?? "1", CultureInfo.InvariantCulture);
        if (!Connect(kind))
        {
            Console.Error.WriteLine($"No {kind} endpoint: start one with tests/ceph/rgw-start.sh and export BLOCKBACKUP_S3_ENDPOINT, BLOCKBACKUP_S3_ACCESS_KEY, BLOCKBACKUP_S3_SECRET_KEY (swift: BLOCKBACKUP_SWIFT_AUTH_URL, BLOCKBACKUP_SWIFT_USER, BLOCKBACKUP_SWIFT_KEY).");
            return 2;
        }

        Directory.CreateDirectory(dir);
        var volume = Path.Combine(dir, "vol.img");
        Console.WriteLine($"Generating {size >> 20} MiB mixed volume (40% random, 30% text, 15% zeros, 15% holes) in {dir}");
        VolumeGenerator.Create(volume, size, seed: 1);
        var sourceSha = Benchmark.Sha(volume);
        var harness = Path.Combine(AppContext.BaseDirectory, "interop", $"cinder_{kind}.py");
        var cinder = !Cli.Flag(args, "--no-cinder") && File.Exists("/usr/bin/python3") && File.Exists(harness);
        var rows = new List<(string Op, double Ours, double OursRss, double? Cinder, double? CinderRss)>();
        for (var run = 1; run <= runs; run++)
        {
            var tag = Guid.NewGuid().ToString("N")[..10];
            var repository = $"{kind}://bench-bb-{tag}";
            var restored = Path.Combine(dir, "restored.img");
            File.Delete(restored);
            var backup = Benchmark.Child(["backup", volume, repository, "--name", "bench", "--compression", compression, "--no-snapshot"]);
            var restore = Benchmark.Child(["restore", repository, backup["id"], restored]);
            var identical = Benchmark.Sha(restored) == sourceSha;
            Dictionary<string, string>? cinderBackup = null, cinderRestore = null;
            var cinderIdentical = true;
            if (cinder)
            {
                var db = Path.Combine(dir, "cinder-db-" + tag);
                var container = $"bench-cinder-{tag}";
                var id = Guid.NewGuid().ToString();
                cinderBackup = Python(harness, ["backup", volume, "--id", id, "--volume-id", Guid.NewGuid().ToString(), "--compression", compression, "--container", container, "--db", db]);
                File.Delete(restored);
                cinderRestore = Python(harness, ["restore", id, restored, "--container", container, "--db", db]);
                cinderIdentical = Benchmark.Sha(restored) == sourceSha;
            }

            Console.WriteLine($"run {run}: restored volume identical to source: BlockBackup {identical}{(cinder ? $", Cinder {cinderIdentical}" : string.Empty)}");
            if (!identical || !cinderIdentical)
            {
                return 1;
            }

            rows.Add(("full backup", Seconds(backup), Rss(backup), cinderBackup is null ? null : Seconds(cinderBackup), cinderBackup is null ? null : Rss(cinderBackup)));
            rows.Add(("restore", Seconds(restore), Rss(restore), cinderRestore is null ? null : Seconds(cinderRestore), cinderRestore is null ? null : Rss(cinderRestore)));
        }

        Console.WriteLine();
        Console.WriteLine($"Object-store benchmark ({kind}, {size >> 20} MiB mixed volume, {compression}, 50 MiB objects, {Environment.ProcessorCount} cores; median of {runs}):");
        Console.WriteLine($"{"operation",-12} {"BlockBackup s",14} {"MB/s",7} {"RSS MB",7} {"Cinder s",9} {"MB/s",7} {"RSS MB",7} {"speed-up",9}");
        foreach (var group in rows.GroupBy(r => r.Op))
        {
            var ours = Median(group.Select(r => r.Ours));
            var rss = group.Max(r => r.OursRss);
            var theirs = group.All(r => r.Cinder is not null) ? Median(group.Select(r => r.Cinder!.Value)) : (double?)null;
            var theirRss = group.All(r => r.CinderRss is not null) ? group.Max(r => r.CinderRss!.Value) : (double?)null;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{group.Key,-12} {ours,14:F2} {size / ours / 1e6,7:F0} {rss,7:F0} {(theirs is { } t ? t.ToString("F2", CultureInfo.InvariantCulture) : "-"),9} {(theirs is { } t2 ? (size / t2 / 1e6).ToString("F0", CultureInfo.InvariantCulture) : "-"),7} {(theirRss is { } r ? r.ToString("F0", CultureInfo.InvariantCulture) : "-"),7} {(theirs is { } t3 ? (t3 / ours).ToString("F1", CultureInfo.InvariantCulture) + "x" : "-"),9}"));
        }

        if (!Cli.Flag(args, "--keep"))
        {
            Directory.Delete(dir, true);
        }

        return 0;
    }

    /// <summary>Points this process's environment (inherited by the children) at the store: bbk takes s3:// and swift:// connections from there.</summary>
    private static bool Connect(string kind)
    {
        static string? Env(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : null;
        if (kind == "s3")
        {
            var (endpoint, key, secret) = (Env("BLOCKBACKUP_S3_ENDPOINT") ?? Env("AWS_ENDPOINT_URL"), Env("BLOCKBACKUP_S3_ACCESS_KEY") ?? Env("AWS_ACCESS_KEY_ID"), Env("BLOCKBACKUP_S3_SECRET_KEY") ?? Env("AWS_SECRET_ACCESS_KEY"));
            if (endpoint is null || key is null || secret is null)
            {
                return false;
            }

            Environment.SetEnvironmentVariable("AWS_ENDPOINT_URL", endpoint);
            Environment.SetEnvironmentVariable("AWS_ACCESS_KEY_ID", key);
            Environment.SetEnvironmentVariable("AWS_SECRET_ACCESS_KEY", secret);
            // The Cinder harness's names.
            Environment.SetEnvironmentVariable("RGW_ENDPOINT", endpoint);
            Environment.SetEnvironmentVariable("S3_ACCESS_KEY", key);
            Environment.SetEnvironmentVariable("S3_SECRET_KEY", secret);
            return true;
        }

        var (auth, user, password) = (Env("BLOCKBACKUP_SWIFT_AUTH_URL") ?? Env("ST_AUTH"), Env("BLOCKBACKUP_SWIFT_USER") ?? Env("ST_USER"), Env("BLOCKBACKUP_SWIFT_KEY") ?? Env("ST_KEY"));
        if (auth is null || user is null || password is null)
        {
            return false;
        }

        Environment.SetEnvironmentVariable("ST_AUTH", auth);
        Environment.SetEnvironmentVariable("ST_USER", user);
        Environment.SetEnvironmentVariable("ST_KEY", password);
        Environment.SetEnvironmentVariable("SWIFT_AUTH_URL", auth);
        Environment.SetEnvironmentVariable("SWIFT_USER", user);
        Environment.SetEnvironmentVariable("SWIFT_KEY", password);
        return true;
    }

    private static Dictionary<string, string> Python(string script, string[] args)
    {
        var psi = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(script);
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        Console.Write(string.Concat(output.Split('\n').Where(l => l.Length > 0 && !l.StartsWith("RESULT", StringComparison.Ordinal)).Select(l => "  " + l + "\n")));
        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException($"Cinder's driver failed ({string.Join(' ', args)}):\n{output}\n{stderr.Result}");
        }

        var line = output.Split('\n').Single(l => l.StartsWith("RESULT ", StringComparison.Ordinal));
        return Pair().Matches(line).ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value);
    }

    private static double Seconds(Dictionary<string, string> r) => double.Parse(r["elapsed"], CultureInfo.InvariantCulture);

    private static double Rss(Dictionary<string, string> r) => double.Parse(r["maxrss_mb"], CultureInfo.InvariantCulture);

    private static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
    }

    [GeneratedRegex(@"(\w+)=(\S+)")]
    private static partial Regex Pair();
}
