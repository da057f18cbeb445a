using System.Diagnostics;
using System.Globalization;
using BlockBackup.Bench;
using BlockBackup.Engine;
using BlockBackup.Engine.Compression;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Operations;
using BlockBackup.Engine.Repository;

// bbk: the benchmark, plus a small command line over the engine that the benchmark and the
// crash tests run as child processes (so each operation's CPU time and peak RSS are its own).
using var allocations = AllocationSampler.FromEnvironment();
var exitCode = Cli.Run(args);
allocations?.Report();
return exitCode;

internal static class Cli
{
    private const string Usage = """
        bbk gen <path> <size> [--seed N] [--holes PCT]      deterministic mixed volume (40% random, 30% text, 15% zeros, 15% holes)
        bbk mutate <path> <percent> <seed>                  overwrite ~percent% in scattered 4-64 KiB writes
        bbk backup <volume> <repo> [--incremental] [--name N] [--compression zlib|bz2|zstd|none] [--level N] [--object-size BYTES] [--force] [--no-snapshot] [--workers N] [--trace]
        bbk backup-rbd <pool>/<image> <repo> [--conf CEPH_CONF] [--incremental] [--name N]   an RBD image into a chunked repository (snapshot diffs)
        bbk restore <repo> <backup-id> <target> [--force] [--workers N]
        bbk verify <repo> <backup-id> [--chain]
        bbk list <repo>
        bbk delete <repo> <backup-id> [--dependents]
        bbk cleanup <repo>
        bbk bench [--size 2G] [--sparse-size 16G] [--dir DIR] [--compression zlib] [--keep]
        bbk bench-rbd [--conf CEPH_CONF] [--size 4G]         RBD full vs incremental, export-diff parsing (pools rbd, backups)
        bbk bench-retention [--backups 10000] [--volumes 20]  retention planning over a synthetic listing (chains, damaged)
        bbk bench-policy [--volumes 4] [--nights 10]           a policy run's overhead over the backups it makes
        bbk bench-objstore [--kind s3|swift] [--size 512M] [--compression zlib] [--runs 1] [--no-cinder] [--keep]   BlockBackup vs Cinder's s3/swift driver on one store (BLOCKBACKUP_S3_* / BLOCKBACKUP_SWIFT_*)
        bbk bench-sparse [--sizes 1T,4T] [--data 64M] [--repository DIR|s3://…] [--rbd CEPH_CONF] [--pwsh [--module PSD1]] [--keep]   peak RSS against volume size (--pwsh: the cmdlets in a fresh pwsh): sparse volumes; backup, incremental, verify, list, restore
        bbk bench-codec [--size 8M] [--codecs bz2,zlib,zstd] [--level N] [--dir DIR]   one object of repetitive text, random and JSON log per codec
        BBK_ALLOC=1 in the environment: allocations sampled by type and size, printed to stderr at exit
        """;

    public static int Run(string[] args)
    {
        try
        {
            return args.FirstOrDefault() switch
            {
                "gen" => Gen(args),
                "mutate" => Mutate(args),
                "backup" => Backup(args),
                "backup-rbd" => BackupRbd(args),
                "restore" => Restore(args),
                "verify" => Verify(args),
                "list" => List(args),
                "delete" => Delete(args),
                "cleanup" => Cleanup(args),
                "bench" => Benchmark.Run(args),
                "bench-rbd" => RbdBenchmark.Run(args),
                "bench-retention" => RetentionBenchmark.Run(args),
                "bench-policy" => PolicyBenchmark.Run(args),
                "bench-codec" => CodecBenchmark.Run(args),
                "bench-objstore" => ObjectStoreBenchmark.Run(args),
                "bench-sparse" => SparseBenchmark.Run(args),
                _ => Fail(Usage),
            };
        }
        catch (BackupException ex)
        {
            Console.Error.WriteLine($"error {ex.ErrorId}: {ex.Message}");
            return 2;
        }
        catch (IndexOutOfRangeException)
        {
            // The commands index their positional arguments directly.
            return Fail($"bbk {args[0]}: missing arguments.\n{Usage}");
        }
    }

    private static int Fail(string message)
    {
        Console.Error.WriteLine(message);
        return 1;
    }

    internal static string? Option(string[] args, string name) =>
        Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;

    internal static bool Flag(string[] args, string name) => args.Contains(name);

    internal static long ParseSize(string s)
    {
        s = s.Trim().ToUpperInvariant().Replace("IB", string.Empty, StringComparison.Ordinal);
        var mult = s[^1] switch { 'T' => 1L << 40, 'G' => 1L << 30, 'M' => 1L << 20, 'K' => 1L << 10, _ => 1L };
        return (long)(double.Parse(mult == 1 ? s : s[..^1], CultureInfo.InvariantCulture) * mult);
    }

    /// <summary>--workers N: one worker makes every repository call in a fixed order on one thread (the crash tests count system calls).</summary>
    private static int? Workers(string[] a) => Option(a, "--workers") is { } w ? int.Parse(w, CultureInfo.InvariantCulture) : null;

    private static int Gen(string[] a)
    {
        var holes = Option(a, "--holes");
        VolumeGenerator.Create(a[1], ParseSize(a[2]), int.Parse(Option(a, "--seed") ?? "1", CultureInfo.InvariantCulture),
            holes is null ? null : double.Parse(holes, CultureInfo.InvariantCulture));
        return 0;
    }

    private static int Mutate(string[] a)
    {
        var n = VolumeGenerator.Mutate(a[1], double.Parse(a[2], CultureInfo.InvariantCulture), int.Parse(a[3], CultureInfo.InvariantCulture));
        Console.WriteLine($"mutated {n} bytes");
        return 0;
    }

    private static int Backup(string[] a)
    {
        using var opened = Open(a[2], create: true);
        var repo = opened.Repository;
        var request = new BackupRequest
        {
            SourcePath = a[1],
            Incremental = Flag(a, "--incremental"),
            Name = Option(a, "--name"),
            Compression = CompressionNames.Parse(Option(a, "--compression") ?? "zlib", "--compression"),
            CompressionLevel = Option(a, "--level") is { } l ? int.Parse(l, CultureInfo.InvariantCulture) : null,
            ObjectSize = Option(a, "--object-size") is { } s ? ParseSize(s) : repo.DefaultObjectSize,
            Force = Flag(a, "--force"),
            UseSnapshot = !Flag(a, "--no-snapshot"),
            Workers = Workers(a),
            Log = message => Console.Error.WriteLine("verbose: " + message),
        };
        var r = BackupOperation.Run(repo, request, Flag(a, "--trace") ? new PhaseTrace() : null);
        Console.WriteLine($"backup {r.Backup.Id} ({(r.Backup.IsIncremental ? "incremental" : "full")}, {r.ConsistencyDetail}) read {r.BytesRead} backed up {r.BytesBackedUp} stored {r.Backup.StoredBytes} in {r.Duration.TotalSeconds:F2}s");
        PrintResult("backup", r.Duration, r.Backup.VolumeSize, $"id={r.Backup.Id} stored={r.Backup.StoredBytes} read={r.BytesRead}");
        return 0;
    }

    private static int BackupRbd(string[] a)
    {
        var conf = Option(a, "--conf") ?? Environment.GetEnvironmentVariable("BLOCKBACKUP_CEPH_CONF")
            ?? throw new ArgumentException("give --conf <ceph.conf> or set BLOCKBACKUP_CEPH_CONF");
        using var opened = Open(a[2], create: true);
        var image = BlockBackup.Engine.Rbd.RbdImageRef.Parse(a[1]);
        var client = new BlockBackup.Engine.Rbd.RbdClient(new BlockBackup.Engine.Rbd.RbdConnection(conf));
        var request = new BackupRequest
        {
            SourcePath = "rbd:" + image.Spec,
            Incremental = Flag(a, "--incremental"),
            Name = Option(a, "--name"),
            ObjectSize = opened.Repository.DefaultObjectSize,
            Log = message => Console.Error.WriteLine("verbose: " + message),
        };
        var r = BlockBackup.Engine.Rbd.RbdFileBackupOperation.Run(opened.Repository, client, image, request);
        Console.WriteLine($"backup {r.Backup.Id} ({(r.Backup.IsIncremental ? "incremental" : "full")} of {image}) read {r.BytesRead} stored {r.Backup.StoredBytes} in {r.Duration.TotalSeconds:F2}s");
        PrintResult("backup", r.Duration, r.Backup.VolumeSize, $"id={r.Backup.Id} stored={r.Backup.StoredBytes} read={r.BytesRead}");
        return 0;
    }

    private static int Restore(string[] a)
    {
        using var opened = Open(a[1], create: false);
        var repo = opened.Repository;
        var r = RestoreOperation.Run(repo, new RestoreRequest { BackupId = Guid.Parse(a[2]), TargetPath = a[3], Overwrite = Flag(a, "--force"), Workers = Workers(a) });
        Console.WriteLine($"restored {r.Backup.Id} to {r.TargetPath}: {r.Decision}; wrote {r.BytesWritten}, zero {r.ZeroBytes}, verified {r.BlocksVerified} blocks in {r.Duration.TotalSeconds:F2}s");
        PrintResult("restore", r.Duration, r.VolumeSize, $"chain={r.ChainLength}");
        return 0;
    }

    private static int Verify(string[] a)
    {
        using var opened = Open(a[1], create: false);
        var repo = opened.Repository;
        var r = VerifyOperation.Run(repo, Guid.Parse(a[2]), Flag(a, "--chain"));
        Console.WriteLine(r);
        foreach (var issue in r.Issues)
        {
            Console.WriteLine("  " + issue);
        }

        PrintResult("verify", r.Duration, r.BytesChecked, $"valid={r.IsValid} objects={r.ObjectsChecked}");
        return r.IsValid ? 0 : 3;
    }

    private static int List(string[] a)
    {
        using var opened = Open(a[1], create: false);
        var repo = opened.Repository;
        var clock = Stopwatch.StartNew();
        var all = repo.List(includeIncomplete: true);
        foreach (var b in all)
        {
            Console.WriteLine($"{b.Id} {b.Status,-10} {(b.IsIncremental ? "incr" : "full")} {b.VolumeId} {b.CreatedUtc:O} {b.Name}");
        }

        Console.WriteLine($"{all.Count} backups listed in {clock.Elapsed.TotalMilliseconds:F0} ms");
        PrintResult("list", clock.Elapsed, 0, $"backups={all.Count}");
        return 0;
    }

    private static int Delete(string[] a)
    {
        using var opened = Open(a[1], create: false);
        var repo = opened.Repository;
        foreach (var b in repo.Remove(Guid.Parse(a[2]), Flag(a, "--dependents")))
        {
            Console.WriteLine($"deleted {b.Id}");
        }

        return 0;
    }

    private static int Cleanup(string[] a)
    {
        using var opened = Open(a[1], create: false);
        var repo = opened.Repository;
        foreach (var b in repo.RemoveIncomplete(TimeSpan.Zero))
        {
            Console.WriteLine($"removed incomplete {b.Id} ({b.Container})");
        }

        return 0;
    }

    /// <summary>
    /// Any chunked repository: a directory, s3://bucket[/prefix] or swift://container[/prefix]
    /// (connections from the environment: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY; ST_AUTH, ST_USER, ST_KEY), or a registered repository's name.
    /// </summary>
    internal static OpenedRepository Open(string location, bool create) =>
        new((IChunkedRepository)RepositoryFactory.Open(RepositoryLocation.Parse(location, Path.GetFullPath), () => throw new InvalidOperationException("bbk does not open rbd: pools here"), create));

    internal sealed record OpenedRepository(IChunkedRepository Repository) : IDisposable
    {
        public void Dispose() => (Repository as IDisposable)?.Dispose();
    }

    /// <summary>Prints each phase change with the time since start (bbk backup --trace).</summary>
    private sealed class PhaseTrace : IProgress<OperationProgress>
    {
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private string? _last;

        public void Report(OperationProgress value)
        {
            var key = value.Phase + value.Activity;
            if (key != _last)
            {
                _last = key;
                Console.Error.WriteLine($"{_clock.Elapsed.TotalSeconds,7:F3}s {value.Phase}: {value.Activity} ({value.BytesDone}/{value.BytesTotal})");
            }
        }
    }

    /// <summary>One machine-readable line: elapsed, CPU seconds, peak RSS, managed bytes allocated and GC counts (gen0/1/2) of this process.</summary>
    private static void PrintResult(string op, TimeSpan elapsed, long bytes, string extra)
    {
        using var self = Process.GetCurrentProcess();
        var hwm = File.Exists("/proc/self/status")
            ? File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("VmHWM:", StringComparison.Ordinal))?.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]
            : null;
        var rssMb = hwm is null ? self.PeakWorkingSet64 / 1048576.0 : long.Parse(hwm, CultureInfo.InvariantCulture) / 1024.0;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"RESULT op={op} elapsed={elapsed.TotalSeconds:F3} bytes={bytes} cpu={self.TotalProcessorTime.TotalSeconds:F2} maxrss_mb={rssMb:F0} alloc_mb={GC.GetTotalAllocatedBytes() / 1048576.0:F0} gc={GC.CollectionCount(0)}/{GC.CollectionCount(1)}/{GC.CollectionCount(2)} {extra}"));
    }
}
