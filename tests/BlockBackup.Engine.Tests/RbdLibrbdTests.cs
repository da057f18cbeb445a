using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Rbd;
using Xunit;

namespace BlockBackup.Engine.Tests;

/// <summary>The librbd layer: diff listing, the in-process diff copy, connection failures.</summary>
public class RbdLibrbdTests
{
    private const long Size = 32 << 20; // eight 4 MiB objects

    [Fact]
    public void PiecesNeverCrossAnObjectAndNeverExceedFourMiB()
    {
        var pieces = RbdExtentCopy.Pieces([new RbdExtent(3 << 20, 10 << 20, true), new RbdExtent(20 << 20, 4096, false)], objectSize: 4 << 20).ToList();
        Assert.Equal(
            [(3L << 20, 1 << 20, true), (4L << 20, 4 << 20, true), (8L << 20, 4 << 20, true), (12L << 20, 1 << 20, true), (20L << 20, 4096, false)],
            pieces);
        // 16 MiB objects still travel in 4 MiB pieces (bounded buffers).
        Assert.All(RbdExtentCopy.Pieces([new RbdExtent(0, 16 << 20, true)], 16 << 20), p => Assert.Equal(4 << 20, p.Length));
    }

    [Fact]
    public void AnExactFullCopyZeroesEveryGapUpToTheTargetsEnd()
    {
        Assert.Equal(
            [new RbdExtent(0, 10, false), new RbdExtent(10, 5, true), new RbdExtent(15, 5, false), new RbdExtent(20, 5, true), new RbdExtent(25, 75, false)],
            RbdRestoreOperation.WithGaps([new RbdExtent(10, 5, true), new RbdExtent(20, 5, true)], 100));
        Assert.Equal([new RbdExtent(0, 8, true)], RbdRestoreOperation.WithGaps([new RbdExtent(0, 8, true)], 8));
    }

    [CephFact]
    public void TheLibrbdDiffSourceStreamsTheImageInOrderWhateverTheReadSizes()
    {
        var (ceph, image, content) = Filled();
        using var _ = ceph;
        ceph.Client.CreateSnapshot(image, "s1");
        using var opened = ceph.Client.Open(image, "s1");
        var extents = opened.Diff(null, wholeObject: false, 0, Size, CancellationToken.None);
        using var source = new RbdImageDiffSource(opened, extents, Size, 4 << 20);
        var rebuilt = new byte[Size];
        var rnd = new Random(7);
        var records = 0;
        while (source.Next() is { } record)
        {
            records++;
            Assert.Equal(RbdDiffRecordKind.Data, record.Kind);
            // Odd read sizes that straddle the 4 MiB pieces being read ahead, then an exact tail.
            for (var pos = record.Offset; pos < record.End - 12345;)
            {
                var n = (int)Math.Min(rnd.Next(1, 3 << 20), record.End - 12345 - pos);
                source.ReadData(rebuilt.AsSpan((int)pos, n));
                pos += n;
            }

            source.ReadData(rebuilt.AsSpan((int)(record.End - 12345), 12345));
        }

        Assert.True(records >= 1);
        Assert.Equal(content, rebuilt);
    }

    [Fact]
    public void PoolRecordsKeepSubSecondCreationTimes()
    {
        // Backups taken within one second must still list in the order they were made.
        var created = new DateTime(2026, 11, 21, 12, 0, 0, DateTimeKind.Utc).AddTicks(1234567);
        var record = new RbdBackupPool.Record(Guid.NewGuid(), Guid.NewGuid(), null, "n", null, created, "rbd/x");
        Assert.Equal(created, RbdBackupPool.Record.Parse(record.ToJson())!.CreatedUtc);
    }

    private static void ChangeSource(Ceph ceph, RbdImageRef image, byte[] content, long imageSize)
    {
        // Scattered small writes in two objects, one whole object removed (a zero record),
        // and a write into an object that did not exist before.
        var rnd = new Random(5);
        foreach (var (offset, length) in new[] { (4096L, 8192), (1L << 20, 4096), (9L << 20, 65536), (28L << 20, 12288) })
        {
            var data = new byte[length];
            rnd.NextBytes(data);
            data.CopyTo(content, offset);
            ceph.Write(image, offset, data, imageSize);
        }

        using var import = ceph.Client.Tool.StartImportDiff(image);
        var writer = new RbdDiffWriter(import.StandardInput.BaseStream);
        writer.WriteHeader(null, null, imageSize);
        writer.WriteZero(16 << 20, 4 << 20);
        writer.WriteEnd();
        import.StandardInput.Close();
        RbdTool.Finish(import, "import-diff (zero)");
        Array.Clear(content, 16 << 20, 4 << 20);
    }

    private static (Ceph Ceph, RbdImageRef Image, byte[] Content) Filled()
    {
        var ceph = new Ceph();
        var image = ceph.NewImage(size: Size);
        var content = new byte[Size];
        new Random(3).NextBytes(content.AsSpan(0, 24 << 20)); // objects 0-5 hold data, 6-7 are holes
        ceph.Write(image, 0, content[..(24 << 20)], Size);
        return (ceph, image, content);
    }

    [CephFact]
    public void TheObjectMapShortcutFindsExactlyWhatAFullExactDiffFinds()
    {
        var (ceph, image, content) = Filled();
        using var _ = ceph;
        ceph.Client.CreateSnapshot(image, "s1");
        ChangeSource(ceph, image, content, Size);
        ceph.Client.CreateSnapshot(image, "s2");

        using var opened = ceph.Client.Open(image, "s2");
        Assert.True(opened.HasFastDiff, "images are created with the cluster's default features, which include fast-diff");
        var viaObjectMap = opened.Changes("s1", Size, CancellationToken.None);
        var exact = opened.Diff("s1", wholeObject: false, 0, Size, CancellationToken.None);
        Assert.Equal(exact, viaObjectMap);
        Assert.Contains(viaObjectMap, e => !e.Exists && e.Offset == 16 << 20 && e.Length == 4 << 20);
        Assert.True(exact.Where(e => e.Exists).Sum(e => e.Length) < 4 << 20, "an exact diff lists the written ranges, not whole objects");
    }

    [CephFact]
    public void ACopyOfScatteredChangesAndARemovedObjectMakesTheTargetByteIdentical()
    {
        var (ceph, source, content) = Filled();
        using var _ = ceph;
        ceph.Client.CreateSnapshot(source, "s1");
        var target = ceph.NewImage(size: 1 << 20); // smaller: the copy resizes it, as import-diff would
        var full = ceph.Client.CopyDiff(source, "s1", null, target, null, OperationPhase.Writing, CancellationToken.None);
        Assert.Equal(24L << 20, full.DataBytes); // the holes were not written
        Assert.Equal(ceph.Read(source, "s1"), ceph.Read(target, "s1"));

        ChangeSource(ceph, source, content, Size);
        ceph.Client.CreateSnapshot(source, "s2");
        var incremental = ceph.Client.CopyDiff(source, "s2", "s1", target, null, OperationPhase.Writing, CancellationToken.None);
        Assert.Equal(content, ceph.Read(target));
        Assert.Equal(content, ceph.Read(target, "s2"));
        Assert.Equal(4L << 20, incremental.ZeroedBytes);
        Assert.True(incremental.DataBytes < 1 << 20, $"moved {incremental.DataBytes} bytes for ~90 KiB of changes");

        // import-diff's rules: the start snapshot must be on the target, the end one must not.
        Assert.Equal("RbdDiffFailed", Assert.Throws<BackupException>(() => ceph.Client.CopyDiff(source, "s2", "s1", target, null, OperationPhase.Writing, CancellationToken.None)).ErrorId);
        var other = ceph.NewImage(size: Size);
        var ex = Assert.Throws<BackupException>(() => ceph.Client.CopyDiff(source, "s2", "s1", other, null, OperationPhase.Writing, CancellationToken.None));
        Assert.Equal("RbdDiffFailed", ex.ErrorId);
        Assert.Contains("start snapshot 's1'", ex.Message, StringComparison.Ordinal);
    }

    [CephFact]
    public void AClusterThatCannotBeReachedFailsWithinTheTimeoutAndSaysSo()
    {
        using var scratch = new Scratch();
        var conf = scratch.PathOf("unreachable.conf");
        File.WriteAllText(conf, "[global]\nmon host = 127.0.0.1:9\nauth client required = none\n");
        using var client = new RbdClient(new RbdConnection(conf)) { CommandTimeout = TimeSpan.FromSeconds(3) };
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var ex = Assert.Throws<BackupException>(() => client.ListImages("rbd"));
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30), $"took {clock.Elapsed}");
        Assert.Equal("CephConnectionFailed", ex.ErrorId);
        Assert.Contains("Cannot connect to the Ceph cluster", ex.Message, StringComparison.Ordinal);
        Assert.Contains(conf, ex.Message, StringComparison.Ordinal);

        // No monitor address at all: rados_connect's ENOENT is a connection failure, not a missing image.
        var noMon = scratch.PathOf("nomon.conf");
        File.WriteAllText(noMon, "[global]\nauth client required = none\n");
        using var lonely = new RbdClient(new RbdConnection(noMon)) { CommandTimeout = TimeSpan.FromSeconds(3) };
        var noMonEx = Assert.Throws<BackupException>(() => lonely.ListImages("rbd"));
        Assert.Equal("CephConnectionFailed", noMonEx.ErrorId);
        Assert.Contains("mon_host", noMonEx.Message, StringComparison.Ordinal);

        using var missing = new RbdClient(new RbdConnection(scratch.PathOf("nope.conf")));
        Assert.Equal("CephConfigNotFound", Assert.Throws<BackupException>(() => missing.ListImages("rbd")).ErrorId);
    }
}
