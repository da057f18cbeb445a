using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text.RegularExpressions;

namespace BlockBackup.Bench;

/// <summary>
/// The project's benchmark: generates deterministic volumes and times full backup, incremental
/// after a 1% change, an unchanged-data incremental, chain restore and verify, plus a full backup
/// of a mostly-holes volume; each operation runs in its own process so its CPU seconds and peak
/// RSS are measured alone. The restored volume is compared with the source byte for byte.
/// </summary>
internal static partial class Benchmark
{
    public static int Run(string[] args)
    {
        var size = Cli.ParseSize(Cli.Option(args, "--size") ?? "2G");
        var sparseSize = Cli.ParseSize(Cli.Option(args, "--sparse-size") ?? "16G");
        var dir = Cli.Option(args, "--dir") ?? Path.Combine(Path.GetTempPath(), "bbk-bench");
        var compression = Cli.Option(args, "--compression") ?? "zlib";
        Directory.CreateDirectory(dir);
        var volume = Path.Combine(dir, "vol.img");
        var repo = Path.Combine(dir, "repo");
        var restored = Path.Combine(dir, "restored.img");
        foreach (var p in new[] { repo })
        {
            if (Directory.Exists(p))
            {
                Directory.Delete(p, true);
            }
        }

        File.Delete(restored);
        Console.WriteLine($"Generating {size >> 20} MiB mixed volume (40% random, 30% text, 15% zeros, 15% holes) in {dir}");
        VolumeGenerator.Create(volume, size, seed: 1);
        var rows = new List<(string Name, Dictionary<string, string> R)>();
        var common = new[] { "--compression", compression, "--no-snapshot" };

        var full = Child(["backup", volume, repo, "--name", "full", .. common]);
        rows.Add(("full backup", full));
        var mutated = VolumeGenerator.Mutate(volume, 1, 42);
        Console.WriteLine($"Mutated {mutated} bytes ({100.0 * mutated / size:F2}%)");
        var incr = Child(["backup", volume, repo, "--incremental", "--name", "incr-1pct", .. common]);
        rows.Add(("incremental (1% changed)", incr));
        var same = Child(["backup", volume, repo, "--incremental", "--name", "incr-unchanged", .. common]);
        rows.Add(("incremental (unchanged)", same));
        var restore = Child(["restore", repo, same["id"], restored]);
        rows.Add(("chain restore (3 backups)", restore));
        var identical = Sha(volume) == Sha(restored);
        var verify = Child(["verify", repo, same["id"], "--chain"]);
        rows.Add(("verify chain", verify));

        var sparse = Path.Combine(dir, "sparse.img");
        var sparseRepo = Path.Combine(dir, "sparse-repo");
        if (Directory.Exists(sparseRepo))
        {
            Directory.Delete(sparseRepo, true);
        }

        VolumeGenerator.Create(sparse, sparseSize, seed: 2, holesPercent: 95);
        var sparseFull = Child(["backup", sparse, sparseRepo, "--name", "sparse", .. common]);
        rows.Add(($"full backup, {sparseSize >> 30} GiB 95% holes", sparseFull));

        var listing = MeasureListing(dir, int.Parse(Cli.Option(args, "--list-count") ?? "1000", CultureInfo.InvariantCulture));

        Console.WriteLine();
        Console.WriteLine($"BlockBackup benchmark: {Environment.ProcessorCount} cores, .NET {Environment.Version}, compression {compression}");
        Console.WriteLine($"{"operation",-34} {"seconds",8} {"MB/s",8} {"CPU s",7} {"peak RSS MB",12}");
        foreach (var (name, r) in rows)
        {
            var seconds = double.Parse(r["elapsed"], CultureInfo.InvariantCulture);
            var bytes = double.Parse(r["bytes"], CultureInfo.InvariantCulture);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{name,-34} {seconds,8:F2} {bytes / seconds / 1e6,8:F0} {r["cpu"],7} {r["maxrss_mb"],12}"));
        }

        Console.WriteLine($"repository: full stored {long.Parse(full["stored"], CultureInfo.InvariantCulture) >> 20} MiB, 1% incremental stored {long.Parse(incr["stored"], CultureInfo.InvariantCulture) >> 20} MiB");
        Console.WriteLine(listing);
        Console.WriteLine($"restored volume identical to source: {identical}");
        if (!Cli.Flag(args, "--keep"))
        {
            Directory.Delete(dir, true);
        }

        return identical ? 0 : 1;
    }

    /// <summary>Lists a repository of <paramref name="count"/> backups (1 in 10 full) with and without the listing cache.</summary>
    private static string MeasureListing(string dir, int count)
    {
        var repoPath = Path.Combine(dir, "list-repo");
        if (Directory.Exists(repoPath))
        {
            Directory.Delete(repoPath, true);
        }

        var tiny = Path.Combine(dir, "tiny.img");
        VolumeGenerator.Create(tiny, 1 << 20, seed: 3);
        var repository = BlockBackup.Engine.Repository.BackupRepository.Open(repoPath, create: true);
        for (var i = 0; i < count; i++)
        {
            BlockBackup.Engine.Operations.BackupOperation.Run(repository, new BlockBackup.Engine.Operations.BackupRequest
            {
                SourcePath = tiny, Name = $"b{i}", Incremental = i % 10 != 0, UseSnapshot = false,
            });
        }

        var clock = Stopwatch.StartNew();
        var listed = BlockBackup.Engine.Repository.BackupRepository.Open(repoPath, create: false).List().Count;
        var cached = clock.Elapsed;
        foreach (var summary in Directory.EnumerateFiles(repoPath, "blockbackup.json", SearchOption.AllDirectories))
        {
            File.Delete(summary);
        }

        clock.Restart();
        BlockBackup.Engine.Repository.BackupRepository.Open(repoPath, create: false).List();
        var uncached = clock.Elapsed;
        return string.Create(CultureInfo.InvariantCulture,
            $"listing {listed} backups: {cached.TotalMilliseconds:F0} ms with the listing cache, {uncached.TotalMilliseconds:F0} ms parsing every metadata file");
    }

    internal static Dictionary<string, string> Child(string[] args)
    {
        var self = Environment.ProcessPath!;
        var psi = new ProcessStartInfo(self) { RedirectStandardOutput = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            psi.ArgumentList.Add(typeof(Benchmark).Assembly.Location);
        }

        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        return Child(psi, $"bbk {string.Join(' ', args)}");
    }

    /// <summary>Runs a child that prints one RESULT line of key=value pairs (bbk, or a pwsh script) and returns the pairs; its other output is echoed indented.</summary>
    internal static Dictionary<string, string> Child(ProcessStartInfo psi, string description)
    {
        psi.RedirectStandardOutput = true;
        psi.UseShellExecute = false;
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        Console.Write(output.Split('\n').Where(l => !l.StartsWith("RESULT", StringComparison.Ordinal)).Aggregate("", (acc, l) => l.Length == 0 ? acc : acc + "  " + l + "\n"));
        if (p.ExitCode != 0)
        {
            throw new InvalidOperationException($"{description} failed with exit code {p.ExitCode}");
        }

        var line = output.Split('\n').Single(l => l.StartsWith("RESULT ", StringComparison.Ordinal));
        return Pair().Matches(line).ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value);
    }

    internal static string Sha(string path)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.SequentialScan);
        return Convert.ToHexString(SHA256.HashData(f));
    }

    [GeneratedRegex(@"(\w+)=(\S+)")]
    private static partial Regex Pair();
}
