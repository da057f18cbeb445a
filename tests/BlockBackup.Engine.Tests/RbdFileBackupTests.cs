using BlockBackup.Engine.Operations;
using BlockBackup.Engine.Rbd;
using Xunit;

namespace BlockBackup.Engine.Tests;

/// <summary>RBD image → chunked repository (Cinder's chunked format: a directory, or S3 on the test RGW), on the real test cluster.</summary>
public class RbdFileBackupTests
{
    [CephFact]
    public void IncrementalsReadOnlyWhatChangedAndChainsRestoreExactly()
    {
        using var s = new Scratch();
        Run(s.Repository, s);
    }

    [CephAndS3Fact]
    public void IntoS3IncrementalsReadOnlyWhatChangedAndChainsRestoreExactly()
    {
        using var s = new Scratch();
        using var repository = RgwRepositories.Open(Repository.RepositoryKind.S3, RgwRepositories.NewContainer("rbd"));
        Run(repository, s);
    }

    private static void Run(Repository.IChunkedRepository repository, Scratch s)
    {
        using var ceph = new Ceph();
        const long size = (20 << 20) + (64 << 10); // not a multiple of the 4 MiB RBD object
        var image = ceph.NewImage(size: size);
        var content = new byte[size];
        var rnd = new Random(4);
        foreach (var (offset, length) in new[] { (0L, 2 << 20), (6L << 20, 3 << 20), (size - (100 << 10), 100 << 10) })
        {
            var data = new byte[length];
            BlockBackup.Bench.VolumeGenerator.Fill(offset == 0 ? 't' : 'r', rnd, data);
            data.CopyTo(content, offset);
            ceph.Write(image, offset, data, size);
        }

        BackupResult Backup(bool incremental) => RbdFileBackupOperation.Run(repository, ceph.Client, image,
            new BackupRequest { SourcePath = image.Spec, Incremental = incremental, ObjectSize = 8 << 20 });

        var full = Backup(incremental: false);
        Assert.Equal("rbd-snapshot", full.Backup.Consistency);
        Assert.Equal(size, full.Backup.VolumeSize);
        // Allocated RBD objects only (whole 4 MiB objects 0, 1, 2, 4 and the 64 KiB tail), never object 3.
        Assert.Equal((16L << 20) + (64 << 10), full.BytesRead);
        Assert.NotNull(repository.ReadMetadata(full.Backup).Extra!.SourceSnapshot);
        var states = new List<(Guid Id, byte[] Content)> { (full.Backup.Id, (byte[])content.Clone()) };

        // A small change in one 4 MiB object: only that object is read.
        var change = new byte[100_000];
        rnd.NextBytes(change);
        change.CopyTo(content, 13 << 20);
        ceph.Write(image, 13 << 20, change, size);
        var incr = Backup(incremental: true);
        Assert.Contains("differential", incr.ConsistencyDetail, StringComparison.Ordinal);
        Assert.Equal(full.Backup.Id, incr.Backup.ParentId);
        Assert.True(incr.BytesRead <= (4L << 20), $"the incremental read {incr.BytesRead} bytes for a 100 kB change");
        Assert.True(incr.BytesBackedUp <= 4 * 32768, $"only changed blocks are stored ({incr.BytesBackedUp})");
        states.Add((incr.Backup.Id, (byte[])content.Clone()));

        // Zeroing data is a change too.
        ceph.Write(image, 6L << 20, new byte[1 << 20], size);
        Array.Clear(content, 6 << 20, 1 << 20);
        var zeroed = Backup(incremental: true);
        states.Add((zeroed.Backup.Id, (byte[])content.Clone()));

        // Without the parent's snapshot on the image: a full read, still stored as an incremental.
        var parentSnapshot = repository.ReadMetadata(zeroed.Backup).Extra!.SourceSnapshot!;
        ceph.Client.RemoveSnapshot(image, parentSnapshot);
        change.AsSpan(0, 1000).Clear();
        change.AsSpan(0, 1000).CopyTo(content.AsSpan(13 << 20));
        ceph.Write(image, 13 << 20, change[..1000], size);
        var reread = Backup(incremental: true);
        Assert.Contains("full read", reread.ConsistencyDetail, StringComparison.Ordinal);
        Assert.Equal(zeroed.Backup.Id, reread.Backup.ParentId);
        Assert.True(reread.BytesBackedUp <= 32768, $"unchanged blocks are not stored again ({reread.BytesBackedUp})");
        states.Add((reread.Backup.Id, (byte[])content.Clone()));

        foreach (var (id, expected) in states)
        {
            var target = s.PathOf($"{id}.img");
            RestoreOperation.Run(repository, new RestoreRequest { BackupId = id, TargetPath = target });
            Assert.Equal(expected, File.ReadAllBytes(target));
        }

        Assert.True(VerifyOperation.Run(repository, states[^1].Id, includeChain: true).IsValid);
    }
}
