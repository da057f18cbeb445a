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
        var rbdConf = Cli.Option(args, "--rbd"); // a thin RBD image (pool rbd) instead of a sparse file
        // --pwsh: each operation is the cmdlet in a fresh pwsh (as users run it: PowerShell's own
        // memory included); otherwise the bbk CLI over the same engine.
        var pwsh = Cli.Flag(args, "--pwsh") ? PwshRunner.Locate(Cli.Option(args, "--module")) : null;
        if (pwsh is not null)
        {
            Console.WriteLine($"through {pwsh}");
        }

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

            using var source = rbdConf is null ? (SparseSource)new SparseFile(volume, size) : new SparseRbdImage(rbdConf, size);
            Console.WriteLine($"{size >> 30} GiB sparse {source.Kind} with {data >> 20} MiB of data in 64 pieces");
            var pieces = Scatter(size, data);
            source.Write(pieces);
            var results = new Dictionary<string, Dictionary<string, string>>
            {
                ["backup"] = Backup(pwsh, source, repository, "sparse", incremental: false),
            };
            var changed = pieces[pieces.Count / 2];
            new Random(4).NextBytes(changed.Data.AsSpan(0, Math.Min(1 << 20, changed.Data.Length)));
            source.Write([changed]);
            results["incremental"] = Backup(pwsh, source, repository, "sparse-incremental", incremental: true);
            var id = results["incremental"]["id"];
            var q = PwshRunner.Quote;
            results["verify"] = pwsh is null ? Benchmark.Child(["verify", repository, id, "--chain"])
                : pwsh.Run("verify", $"$r = Test-VolumeBackup -Repository {q(repository)} -BackupId {id} -IncludeChain; \"valid=$($r.IsValid)\"");
            results["list"] = pwsh is null ? Benchmark.Child(["list", repository])
                : pwsh.Run("list", $"\"count=$(@(Get-VolumeBackup -Repository {q(repository)}).Count)\"");
            results["restore"] = pwsh is null ? Benchmark.Child(["restore", repository, id, restored])
                : pwsh.Run("restore", $"$null = Restore-VolumeBackup -Repository {q(repository)} -BackupId {id} -TargetPath {q(restored)} -Confirm:$false; ''");
            if (results["verify"]["valid"] != "True" || !SameData(restored, size, pieces))
            {
                Console.Error.WriteLine(results["verify"]["valid"] != "True" ? "the chain did not verify" : "the restored volume differs from the source");
                return 1;
            }

            rows.Add((size, results));
            File.Delete(restored);
        }

        Console.WriteLine();
        Console.WriteLine($"Sparse {(rbdConf is null ? "image files" : "RBD images")} ({data >> 20} MiB of data, one 1 MiB piece changed for the incremental), {(pwsh is null ? "bbk" : "cmdlets in pwsh")}, {Environment.ProcessorCount} cores; seconds / peak RSS MB:");
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

    private static Dictionary<string, string> Backup(PwshRunner? pwsh, SparseSource source, string repository, string name, bool incremental) =>
        pwsh is null
            ? Benchmark.Child([.. source.BackupCommand(repository), "--name", name, .. incremental ? new[] { "--incremental" } : []])
            : pwsh.Run("backup", $"$b = New-VolumeBackup {source.CmdletSource} -Repository {PwshRunner.Quote(repository)} -Name {name}{(incremental ? " -Incremental" : "")}; \"id=$($b.Id)\"");

    /// <summary><paramref name="data"/> bytes of mixed content in 64 equal pieces spread over <paramref name="size"/> bytes.</summary>
    private static List<Piece> Scatter(long size, long data)
    {
        var pieces = new List<Piece>();
        var random = new Random(3);
        for (var i = 0; i < 64; i++)
        {
            var buffer = new byte[data / 64];
            VolumeGenerator.Fill("rtz"[i % 3], random, buffer);
            pieces.Add(new Piece(size / 64 * i / 32768 * 32768, buffer));
        }

        return pieces;
    }

    /// <summary>The restored file has the volume's size and every piece's bytes where it was written.</summary>
    private static bool SameData(string restored, long size, List<Piece> pieces)
    {
        using var file = File.OpenHandle(restored);
        if (RandomAccess.GetLength(file) != size)
        {
            return false;
        }

        foreach (var piece in pieces)
        {
            var read = new byte[piece.Data.Length];
            RandomAccess.Read(file, read, piece.Offset);
            if (!read.AsSpan().SequenceEqual(piece.Data))
            {
                return false;
            }
        }

        return true;
    }

    private sealed record Piece(long Offset, byte[] Data);

    /// <summary>What is backed up: a sparse file or a thin RBD image, written piece by piece.</summary>
    private abstract class SparseSource : IDisposable
    {
        public abstract string Kind { get; }

        public abstract void Write(IEnumerable<Piece> pieces);

        public abstract string[] BackupCommand(string repository);

        /// <summary>New-VolumeBackup's parameters naming this source.</summary>
        public abstract string CmdletSource { get; }

        public virtual void Dispose()
        {
        }
    }

    private sealed class SparseFile : SparseSource
    {
        private readonly string path;

        public SparseFile(string path, long size)
        {
            this.path = path;
            using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
            file.SetLength(size);
        }

        public override string Kind => "image file";

        public override void Write(IEnumerable<Piece> pieces)
        {
            using var file = File.OpenHandle(path, FileMode.Open, FileAccess.Write);
            foreach (var piece in pieces)
            {
                RandomAccess.Write(file, piece.Data, piece.Offset);
            }
        }

        public override string[] BackupCommand(string repository) => ["backup", path, repository, "--no-snapshot"];

        public override string CmdletSource => $"-Path {PwshRunner.Quote(path)} -NoSnapshot";

        public override void Dispose() => File.Delete(path);
    }

    /// <summary>A thin image in pool rbd, written through import-diff (unwritten ranges stay unallocated); removed with its snapshots.</summary>
    private sealed class SparseRbdImage : SparseSource
    {
        private readonly string conf;
        private readonly long size;
        private readonly Engine.Rbd.RbdClient client;
        private readonly Engine.Rbd.RbdImageRef image = new("rbd", null, "bbk-sparse-" + Guid.NewGuid().ToString("N")[..8]);

        public SparseRbdImage(string conf, long size)
        {
            this.conf = conf;
            this.size = size;
            client = new Engine.Rbd.RbdClient(new Engine.Rbd.RbdConnection(conf)) { CommandTimeout = TimeSpan.FromMinutes(10) };
            client.CreateImage(image, size);
        }

        public override string Kind => $"RBD image {image}";

        public override void Write(IEnumerable<Piece> pieces)
        {
            using var import = client.Tool.StartImportDiff(image);
            var writer = new Engine.Rbd.RbdDiffWriter(import.StandardInput.BaseStream);
            writer.WriteHeader(null, null, size);
            foreach (var piece in pieces)
            {
                writer.WriteData(piece.Offset, piece.Data);
            }

            writer.WriteEnd();
            import.StandardInput.Close();
            Engine.Rbd.RbdTool.Finish(import, "import-diff (sparse pieces)");
        }

        public override string[] BackupCommand(string repository) => ["backup-rbd", image.Spec, repository, "--conf", conf];

        public override string CmdletSource => $"-RbdImage {PwshRunner.Quote(image.Spec)} -CephConfig {PwshRunner.Quote(conf)}";

        public override void Dispose()
        {
            foreach (var snapshot in client.Snapshots(image))
            {
                client.RemoveSnapshot(image, snapshot.Name);
            }

            client.RemoveImage(image);
        }
    }
}
