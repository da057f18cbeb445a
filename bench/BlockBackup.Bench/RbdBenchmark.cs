using System.Diagnostics;
using System.Globalization;
using BlockBackup.Engine.Rbd;

namespace BlockBackup.Bench;

/// <summary>
/// bbk bench-rbd --conf CEPH_CONF [--size 4G]: on a real cluster (pools rbd and backups), a full
/// backup of an image of mixed content into the backup pool, then incrementals after ~1% of the
/// image changed in scattered writes and in one region (they should cost what changed, not the
/// image size), the OSD's own small-write rate for comparison, the same into a file repository,
/// then export-diff parsing speed against `rbd export-diff > /dev/null`.
/// </summary>
internal static class RbdBenchmark
{
    public static int Run(string[] args)
    {
        var conf = Cli.Option(args, "--conf") ?? Environment.GetEnvironmentVariable("BLOCKBACKUP_CEPH_CONF")
            ?? throw new ArgumentException("give --conf <ceph.conf> or set BLOCKBACKUP_CEPH_CONF");
        var size = Cli.ParseSize(Cli.Option(args, "--size") ?? "4G");
        var client = new RbdClient(new RbdConnection(conf)) { CommandTimeout = TimeSpan.FromMinutes(10) };
        var pool = new RbdBackupPool(client, "backups");
        var image = new RbdImageRef("rbd", null, "bbk-bench-" + Guid.NewGuid().ToString("N")[..8]);
        client.CreateImage(image, size);
        try
        {
            var clock = Stopwatch.StartNew();
            Fill(client, image, size);
            Console.WriteLine($"filled {image} ({size >> 20} MiB, ~85% allocated) in {clock.Elapsed.TotalSeconds:F1}s");

            clock.Restart();
            var full = RbdBackupOperation.Run(pool, new RbdBackupRequest { Source = image, Name = "bench-full" });
            var fullTime = clock.Elapsed;

            var changed = Mutate(client, image, size, percent: 1, seed: 42, contiguous: false);
            clock.Restart();
            var incr = RbdBackupOperation.Run(pool, new RbdBackupRequest { Source = image, Incremental = true, Name = "bench-incr" });
            var incrTime = clock.Elapsed;
            // Three times (this machine's timings vary by ±20%): the median is reported.
            long contiguous = 0;
            RbdBackupResult incr2 = incr;
            var incr2Times = new List<double>();
            for (var run = 0; run < 3; run++)
            {
                contiguous = Mutate(client, image, size, percent: 1, seed: 43 + run, contiguous: true);
                clock.Restart();
                incr2 = RbdBackupOperation.Run(pool, new RbdBackupRequest { Source = image, Incremental = true, Name = $"bench-incr2-{run}" });
                incr2Times.Add(clock.Elapsed.TotalSeconds);
            }

            var incr2Time = TimeSpan.FromSeconds(incr2Times.Order().ElementAt(1));

            // The same image into a file repository (Cinder's chunked format, zlib): full, then an
            // incremental after 1% changed in one region.
            var repoDir = Path.Combine(Path.GetTempPath(), "bbk-bench-rbd-repo-" + Guid.NewGuid().ToString("N")[..8]);
            TimeSpan fileFullTime, fileIncrTime;
            long fileIncrRead;
            try
            {
                var repository = Engine.Repository.BackupRepository.Open(repoDir, create: true);
                clock.Restart();
                Engine.Rbd.RbdFileBackupOperation.Run(repository, client, image, new Engine.Operations.BackupRequest { SourcePath = "rbd:" + image.Spec });
                fileFullTime = clock.Elapsed;
                Mutate(client, image, size, percent: 1, seed: 44, contiguous: true);
                clock.Restart();
                var fileIncr = Engine.Rbd.RbdFileBackupOperation.Run(repository, client, image, new Engine.Operations.BackupRequest { SourcePath = "rbd:" + image.Spec, Incremental = true });
                fileIncrTime = clock.Elapsed;
                fileIncrRead = fileIncr.BytesRead;
            }
            finally
            {
                Directory.Delete(repoDir, recursive: true);
            }

            var devNull = TimeExportToDevNull(conf, image, incr.SourceSnapshot, throughPipe: false);
            var piped = TimeExportToDevNull(conf, image, incr.SourceSnapshot, throughPipe: true);
            var (parseTime, parsed) = TimeParse(client, image, incr.SourceSnapshot);
            // What the cluster itself allows for the scattered case: every changed extent is one
            // write into an object whose snapshot must be preserved (copy-on-write on the OSD).
            var extents = client.Diff(image, incr.SourceSnapshot, full.SourceSnapshot).Count;
            var writesPerSecond = OsdRandomWriteRate(conf, image, extents);

            Console.WriteLine();
            Console.WriteLine($"RBD benchmark, {size >> 30} GiB image ({Environment.ProcessorCount} cores)");
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"full backup into pool:         {fullTime.TotalSeconds,7:F2} s  ({full.DiffBytes >> 20} MiB moved)"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"incremental, {100.0 * changed / size:F2}% scattered 4-64 KiB writes: {incrTime.TotalSeconds,6:F2} s  ({incr.DiffBytes >> 20} MiB in {extents} extents; {100 * incrTime.TotalSeconds / fullTime.TotalSeconds:F1}% of the full backup's time)"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"incremental, {100.0 * contiguous / size:F2}% in one region:       {incr2Time.TotalSeconds,6:F2} s  ({incr2.DiffBytes >> 20} MiB; {100 * incr2Time.TotalSeconds / fullTime.TotalSeconds:F1}% of the full backup's time; median of {string.Join(", ", incr2Times.Select(t => t.ToString("F2", CultureInfo.InvariantCulture)))} s)"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  cluster bound: rbd bench does {writesPerSecond:F0} random 32 KiB writes/s after a snapshot (64 in flight),"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  so writing {extents} extents takes any client >= {extents / writesPerSecond:F2} s ({100 * extents / writesPerSecond / fullTime.TotalSeconds:F1}% of the full backup's time)"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"into a file repository: full {fileFullTime.TotalSeconds:F2} s; incremental after 1% in one region {fileIncrTime.TotalSeconds:F2} s ({fileIncrRead >> 20} MiB read; {100 * fileIncrTime.TotalSeconds / fileFullTime.TotalSeconds:F1}%)"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"rbd export-diff > /dev/null:   {devNull.TotalSeconds,7:F2} s"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"rbd export-diff | cat >/dev/null:{piped.TotalSeconds,5:F2} s  (any reader pays the pipe)"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"export-diff through our parser:{parseTime.TotalSeconds,7:F2} s  ({parsed >> 20} MiB of data records)"));
            RbdBackupOperation.Remove(pool, full.Backup.Id, includeDependents: true);

            return 0;
        }
        finally
        {
            foreach (var s in client.Snapshots(image))
            {
                client.RemoveSnapshot(image, s.Name);
            }

            client.RemoveImage(image);
        }
    }

    /// <summary>Writes 1 MiB regions of the benchmark mix through import-diff (holes stay unwritten).</summary>
    private static void Fill(RbdClient client, RbdImageRef image, long size)
    {
        using var import = client.Tool.StartImportDiff(image);
        var stream = import.StandardInput.BaseStream;
        var rnd = new Random(1);
        var buffer = new byte[VolumeGenerator.Region];
        var buffered = new BufferedStream(stream, 1 << 20);
        var writer = new RbdDiffWriter(buffered);
        writer.WriteHeader(null, null, size);
        for (long pos = 0; pos < size; pos += buffer.Length)
        {
            var kind = "rrrrrrrrtttttttzzzhhh"[rnd.Next(20)];
            if (kind == 'h')
            {
                continue;
            }

            VolumeGenerator.Fill(kind, rnd, buffer);
            writer.WriteData(pos, buffer);
        }

        writer.WriteEnd();
        buffered.Flush();
        stream.Close();
        RbdTool.Finish(import, "import-diff (fill)");
    }

    private static long Mutate(RbdClient client, RbdImageRef image, long size, double percent, int seed, bool contiguous)
    {
        if (contiguous)
        {
            var length = (long)(size * percent / 100) / 4096 * 4096;
            var region = new byte[length];
            new Random(seed).NextBytes(region);
            var start = size / 3 / 4096 * 4096;
            using var writer1 = client.Tool.StartImportDiff(image);
            var w = new RbdDiffWriter(writer1.StandardInput.BaseStream);
            w.WriteHeader(null, null, size);
            w.WriteData(start, region);
            w.WriteEnd();
            writer1.StandardInput.Close();
            RbdTool.Finish(writer1, "import-diff (mutate)");
            return length;
        }

        using var import = client.Tool.StartImportDiff(image);
        var buffered = new BufferedStream(import.StandardInput.BaseStream, 1 << 20);
        var writer = new RbdDiffWriter(buffered);
        writer.WriteHeader(null, null, size);
        var rnd = new Random(seed);
        var target = (long)(size * percent / 100);
        var offsets = new SortedDictionary<long, int>();
        long total = 0;
        while (total < target)
        {
            var length = rnd.Next(1, 17) * 4096;
            var offset = rnd.NextInt64(0, size / 4096 - 16) * 4096;
            if (offsets.TryAdd(offset, length))
            {
                total += length;
            }
        }

        var data = new byte[64 * 1024];
        long end = 0;
        foreach (var (offset, length) in offsets)
        {
            var start = Math.Max(offset, end); // keep records ordered and non-overlapping
            if (start >= offset + length)
            {
                continue;
            }

            rnd.NextBytes(data);
            writer.WriteData(start, data.AsSpan(0, (int)(offset + length - start)));
            end = offset + length;
        }

        writer.WriteEnd();
        buffered.Flush();
        import.StandardInput.Close();
        RbdTool.Finish(import, "import-diff (mutate)");
        return total;
    }

    private static TimeSpan TimeExportToDevNull(string conf, RbdImageRef image, string snapshot, bool throughPipe)
    {
        var clock = Stopwatch.StartNew();
        var script = throughPipe
            ? "rbd --conf \"$1\" export-diff --no-progress \"$2\" - | cat > /dev/null"
            : "rbd --conf \"$1\" export-diff --no-progress \"$2\" - > /dev/null";
        using var p = Process.Start(new ProcessStartInfo("sh", ["-c", script, "sh", conf, image.SnapSpec(snapshot)]))!;
        p.WaitForExit();
        return clock.Elapsed;
    }

    /// <summary>The OSD's rate of small random writes into snapshotted objects, measured with rbd bench on the (already snapshotted) image.</summary>
    private static double OsdRandomWriteRate(string conf, RbdImageRef image, int writes)
    {
        var psi = new ProcessStartInfo("rbd", ["--conf", conf, "bench", "--rbd-cache=false", "--io-type", "write", "--io-size", "32K", "--io-pattern", "rand",
            "--io-threads", "64", "--io-total", $"{Math.Max(writes, 256) * 32}K", image.Spec]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        var m = System.Text.RegularExpressions.Regex.Match(output, @"ops/sec:\s*([0-9.]+)");
        return m.Success ? double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) : double.NaN;
    }

    private static (TimeSpan, long) TimeParse(RbdClient client, RbdImageRef image, string snapshot)
    {
        var clock = Stopwatch.StartNew();
        using var export = client.Tool.StartExportDiff(image, snapshot, null, wholeObject: false);
        var reader = new RbdDiffReader(export.StandardOutput.BaseStream, "bench");
        long bytes = 0;
        while (reader.Next() is { } r) // reads through each record's data
        {
            bytes += r.Kind == RbdDiffRecordKind.Data ? r.Length : 0;
        }

        RbdTool.Finish(export, "export-diff");
        return (clock.Elapsed, bytes);
    }
}
