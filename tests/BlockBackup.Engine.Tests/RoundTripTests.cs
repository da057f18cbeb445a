using BlockBackup.Engine.Compression;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Operations;
using Xunit;

namespace BlockBackup.Engine.Tests;

public class RoundTripTests
{
    public static TheoryData<long, CompressionAlgorithm> Sizes()
    {
        var data = new TheoryData<long, CompressionAlgorithm>();
        foreach (var size in new long[] { 0, 1, 32767, 32768, 32769, (3 << 20) + 12345, 5 << 20 })
        {
            data.Add(size, CompressionAlgorithm.Zlib);
        }

        data.Add((2 << 20) + 777, CompressionAlgorithm.Bz2);
        data.Add((2 << 20) + 777, CompressionAlgorithm.None);
        if (Zstd.IsAvailable)
        {
            data.Add((2 << 20) + 777, CompressionAlgorithm.Zstd);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void FullBackupRestoresByteForByte(long size, CompressionAlgorithm compression)
    {
        using var s = new Scratch();
        var volume = s.MixedVolume("vol.img", size, seed: (int)(size % 1000) + 1);
        var backup = s.Backup(volume, compression: compression, objectSize: 1 << 20);

        Assert.Equal(size, backup.Backup.VolumeSize);
        // Objects tile the whole volume (Cinder needs zeros covered too), in order, within 1 MiB ranges.
        var objects = s.Repository.ReadMetadata(backup.Backup).Objects;
        Assert.Equal(size, objects.Sum(o => o.Length));
        Assert.All(objects.Zip(objects.Skip(1)), p => Assert.Equal(p.First.End, p.Second.Offset));
        Assert.All(objects, o => Assert.Equal(o.Offset >> 20, (o.End - 1) >> 20));
        var result = s.Restore(backup.Backup.Id, s.PathOf("out.img"));
        Assert.Equal(RestorePath.Full, result.Path);
        Assert.Equal(Scratch.Sha(volume), Scratch.Sha(s.PathOf("out.img")));
        Assert.Equal((size + 32767) / 32768, result.BlocksVerified);
        Assert.True(VerifyOperation.Run(s.Repository, backup.Backup.Id, includeChain: true).IsValid);
    }

    [Fact]
    public void ChainOfSixIncrementalsRestoresEveryPointInTime()
    {
        using var s = new Scratch();
        var volume = s.MixedVolume("vol.img", (6 << 20) + 4096, seed: 7);
        var states = new List<(Guid Id, string Sha)>();
        var first = s.Backup(volume, name: "full");
        states.Add((first.Backup.Id, Scratch.Sha(volume)));
        for (var i = 1; i <= 6; i++)
        {
            Scratch.Scribble(volume, seed: 100 + i);
            var incr = s.Backup(volume, incremental: true, name: $"incr-{i}");
            Assert.Equal(states[^1].Id, incr.Backup.ParentId);
            Assert.True(incr.BytesBackedUp < new FileInfo(volume).Length, "an incremental stores only changed extents");
            states.Add((incr.Backup.Id, Scratch.Sha(volume)));
        }

        var chain = s.Repository.GetChain(states[^1].Id);
        Assert.Equal(states.Select(x => x.Id), chain.Backups.Select(b => b.Id));
        for (var i = 0; i < states.Count; i++)
        {
            var target = s.PathOf($"restore-{i}.img");
            var result = s.Restore(states[i].Id, target);
            Assert.Equal(i == 0 ? RestorePath.Full : RestorePath.Chain, result.Path);
            Assert.Equal(i + 1, result.ChainLength);
            Assert.Equal(states[i].Sha, Scratch.Sha(target));
        }

        Assert.True(VerifyOperation.Run(s.Repository, states[^1].Id, includeChain: true).IsValid);
    }

    [Fact]
    public void RestoreOntoDirtyTargetIsExactIncludingZeroedRegions()
    {
        using var s = new Scratch();
        var volume = s.MixedVolume("vol.img", 3 << 20, seed: 11);
        s.Backup(volume);
        // The incremental turns a data region into zeros: a restore must not leave old bytes there.
        using (var f = new FileStream(volume, FileMode.Open, FileAccess.Write))
        {
            f.Position = 1 << 20;
            f.Write(new byte[256 * 1024]);
        }

        var incr = s.Backup(volume, incremental: true);
        var target = s.PathOf("dirty.img");
        var junk = new byte[(4 << 20) + 1];
        new Random(5).NextBytes(junk);
        File.WriteAllBytes(target, junk);

        var refused = Assert.Throws<BackupException>(() => s.Restore(incr.Backup.Id, target));
        Assert.Equal("TargetHasData", refused.ErrorId);
        Assert.Equal(Scratch.Sha(s.PathOf("dirty.img")), Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(junk)));

        var result = s.Restore(incr.Backup.Id, target, overwrite: true);
        Assert.False(result.TargetWasNew);
        Assert.Equal(Scratch.Sha(volume), Scratch.Sha(target));
    }

    [Fact]
    public void HolesAreNotReadButAreStillCoveredByObjectsForCinder()
    {
        using var s = new Scratch();
        var volume = s.PathOf("holes.img");
        using (var f = File.Create(volume))
        {
            f.SetLength(16 << 20);
        }

        var backup = s.Backup(volume, objectSize: 4 << 20);
        Assert.Equal(0, backup.BytesRead);
        Assert.Equal(4, backup.Backup.ObjectCount);
        Assert.True(backup.Backup.StoredBytes < 64 * 1024, $"zero objects compress to almost nothing ({backup.Backup.StoredBytes} bytes)");
        var target = s.PathOf("out.img");
        var result = s.Restore(backup.Backup.Id, target);
        Assert.Equal(0, result.BytesWritten);
        Assert.Equal(16 << 20, new FileInfo(target).Length);
        Assert.True(File.ReadAllBytes(target).All(b => b == 0));
    }

    [Fact]
    public void IncompressibleDataIsStoredRawAndTextIsCompressed()
    {
        using var s = new Scratch();
        var random = s.PathOf("random.img");
        var bytes = new byte[2 << 20];
        new Random(1).NextBytes(bytes);
        File.WriteAllBytes(random, bytes);
        var raw = s.Backup(random);
        var meta = s.Repository.ReadMetadata(raw.Backup);
        Assert.All(meta.Objects, o => Assert.Equal(CompressionAlgorithm.None, o.Compression));

        var text = s.PathOf("text.img");
        var buffer = new byte[2 << 20];
        BlockBackup.Bench.VolumeGenerator.Fill('t', new Random(2), buffer);
        File.WriteAllBytes(text, buffer);
        var packed = s.Backup(text);
        Assert.All(s.Repository.ReadMetadata(packed.Backup).Objects, o => Assert.Equal(CompressionAlgorithm.Zlib, o.Compression));
        Assert.True(packed.Backup.StoredBytes < buffer.Length / 2);
    }

    [Fact]
    public void IncrementalOfUnchangedVolumeStoresNothing()
    {
        using var s = new Scratch();
        var volume = s.MixedVolume("vol.img", 4 << 20, seed: 3);
        s.Backup(volume);
        var same = s.Backup(volume, incremental: true);
        Assert.Equal(0, same.Backup.ObjectCount);
        Assert.Equal(0, same.BytesBackedUp);
        var target = s.PathOf("out.img");
        s.Restore(same.Backup.Id, target);
        Assert.Equal(Scratch.Sha(volume), Scratch.Sha(target));
    }

    [Fact]
    public void IncrementalRulesFollowCinder()
    {
        using var s = new Scratch();
        var volume = s.MixedVolume("vol.img", 1 << 20, seed: 4);
        var none = Assert.Throws<BackupException>(() => s.Backup(volume, incremental: true));
        Assert.Equal("NoParentBackup", none.ErrorId);

        s.Backup(volume);
        using (var f = new FileStream(volume, FileMode.Open))
        {
            f.SetLength(2 << 20);
        }

        var grew = Assert.Throws<BackupException>(() => s.Backup(volume, incremental: true));
        Assert.Equal("VolumeGrew", grew.ErrorId);
        Assert.Single(s.Repository.List());
    }

    [Fact]
    public void RestoreRefusesABlockDeviceOrFileTargetItCannotUse()
    {
        using var s = new Scratch();
        var volume = s.MixedVolume("vol.img", 1 << 20, seed: 9);
        var b = s.Backup(volume);
        var dir = Assert.Throws<BackupException>(() => s.Restore(b.Backup.Id, s.Dir));
        Assert.Equal("TargetIsDirectory", dir.ErrorId);
        var missingDir = Assert.Throws<BackupException>(() => s.Restore(b.Backup.Id, s.PathOf("no/such/dir/out.img")));
        Assert.Equal("TargetDirectoryNotFound", missingDir.ErrorId);
    }
}
