using System.Globalization;

namespace BlockBackup.Bench;

/// <summary>
/// Memory against volume size: sparse image files of 1 TiB and 4 TiB (by default) holding only
/// 64 MiB of data; a full backup, an incremental after one piece changed, a verification of the
/// chain, a listing and a restore of the chain, each in its own process. What is held per block
/// or per object shows up here as peak RSS growing with the size; it must not (issue: bounded
/// below 256 MB whatever the size). The restored volume is compared with the source where it is data.
/// </summary>
internal static class SparseBenchmark
{
    public static int Run(string[] args)
    {
        var sizes = (Cli.Option(args, "--sizes") ?? "1T,4T").Split(',').Select(Cli.ParseSize).ToList();
        var data = Cli.ParseSize(Cli.Option(args, "--data") ?? "64M");
        var dir = Cli.Option(args, "--dir") ?? Path.Combine(Path.GetTempPath(), "bbk-bench-sparse");
        var repositoryArg = Cli.Option(args, "--repository");
        Directory.CreateDirectory(dir);
        string[] operations = ["backup", "incremental", "verify", "list", "restore"];
        var rows = new List<(long Size, Dictionary<string, Dictionary<string, string>> Results)>();
        foreach (var size in sizes)
        {
            var volume = Path.Combine(dir, "sparse.img");
            var repository = repositoryArg ?? Path.Combine(dir, "repo");
            var restored = Path.Combine(dir, "restored.img");
            foreach (var path in new[] { volume, restored })
            {
                File.Delete(path);
            }

            if (repositoryArg is null && Directory.Exists(repository))
            {
                Directory.Delete(repository, true);
            }

            Console.WriteLine($"{size >> 30} GiB sparse volume with {data >> 20} MiB of data in 64 pieces");
            var pieces = Scatter(volume, size, data);
            var results = new Dictionary<string, Dictionary<string, string>>
            {
                ["backup"] = Benchmark.Child(["backup", volume, repository, "--name", "sparse", "--no-snapshot"]),
            };
            Change(volume, pieces[pieces.Count / 2]);
            results["incremental"] = Benchmark.Child(["backup", volume, repository, "--name", "sparse-incremental", "--incremental", "--no-snapshot"]);
            results["verify"] = Benchmark.Child(["verify", repository, results["incremental"]["id"], "--chain"]);
            results["list"] = Benchmark.Child(["list", repository]);
            results["restore"] = Benchmark.Child(["restore", repository, results["incremental"]["id"], restored]);
            if (results["verify"]["valid"] != "True" || !SameData(volume, restored, pieces))
            {
                Console.Error.WriteLine(results["verify"]["valid"] != "True" ? "the chain did not verify" : "the restored volume differs from the source");
                return 1;
            }

            rows.Add((size, results));
            File.Delete(restored);
        }

        Console.WriteLine();
        Console.WriteLine($"Sparse volumes ({data >> 20} MiB of data, one 1 MiB piece changed for the incremental), {Environment.ProcessorCount} cores; seconds / peak RSS MB:");
        Console.WriteLine($"{"volume",8} " + string.Join(" ", operations.Select(o => $"{o,18}")));
        foreach (var (size, results) in rows)
        {
            Console.WriteLine($"{(size >> 30) + " GiB",8} " + string.Join(" ", operations.Select(o =>
                string.Create(CultureInfo.InvariantCulture, $"{results[o]["elapsed"] + " s / " + results[o]["maxrss_mb"],18}"))));
        }

        if (!Cli.Flag(args, "--keep"))
        {
            Directory.Delete(dir, true);
        }

        return 0;
    }

    /// <summary>Writes <paramref name="data"/> bytes of mixed content in 64 equal pieces spread over a sparse file of <paramref name="size"/>.</summary>
    private static List<(long Offset, int Length)> Scatter(string path, long size, long data)
    {
        var pieces = new List<(long, int)>();
        var piece = (int)(data / 64);
        var buffer = new byte[piece];
        var random = new Random(3);
        using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        file.SetLength(size);
        for (var i = 0; i < 64; i++)
        {
            VolumeGenerator.Fill("rtz"[i % 3], random, buffer);
            var offset = size / 64 * i / 32768 * 32768;
            RandomAccess.Write(file.SafeFileHandle, buffer, offset);
            pieces.Add((offset, piece));
        }

        return pieces;
    }

    /// <summary>Overwrites the first MiB of a data piece with other bytes: what the incremental must store.</summary>
    private static void Change(string path, (long Offset, int Length) piece)
    {
        var buffer = new byte[Math.Min(1 << 20, piece.Length)];
        new Random(4).NextBytes(buffer);
        using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Write);
        RandomAccess.Write(file, buffer, piece.Offset);
    }

    private static bool SameData(string a, string b, List<(long Offset, int Length)> pieces)
    {
        using var x = File.OpenHandle(a);
        using var y = File.OpenHandle(b);
        if (RandomAccess.GetLength(x) != RandomAccess.GetLength(y))
        {
            return false;
        }

        foreach (var (offset, length) in pieces)
        {
            var p = new byte[length];
            var q = new byte[length];
            RandomAccess.Read(x, p, offset);
            RandomAccess.Read(y, q, offset);
            if (!p.AsSpan().SequenceEqual(q))
            {
                return false;
            }
        }

        return true;
    }
}
