using System.Security.Cryptography;
using BlockBackup.Engine.Nbd;
using BlockBackup.Engine.ObjectStores;
using BlockBackup.Engine.Operations;
using BlockBackup.Engine.Repository;
using Newtonsoft.Json.Linq;
using Xunit;

namespace BlockBackup.Engine.Tests;

/// <summary>
/// A backup's point in time served over NBD and read by real clients: what they read is what a
/// restore writes, byte for byte; a damaged object is an I/O error on its range only; a writable
/// mount never changes the backup.
/// </summary>
public class NbdExportTests
{
    private const long VolumeSize = (6 << 20) + 8192; // not a multiple of the object size: a short last block

    [NbdFact]
    public void ADirectoryChainReadsAsItsRestoreThroughNbdinfoNbdcopyQemuAndNbdsh()
    {
        using var s = new Scratch();
        var (volume, incremental) = Chain(s, s.Repository);
        ClientsSeeTheRestoredChain(s, s.Repository, incremental, volume);
    }

    [NbdAndS3Fact]
    public void AnS3ChainReadsAsItsRestoreThroughNbdinfoNbdcopyQemuAndNbdsh()
    {
        using var s = new Scratch();
        using var buckets = new S3Buckets(); // removes the bucket afterwards
        using var store = (IDisposable)S3StoreLoader.Create(S3Buckets.Options(buckets.Bucket));
        var repository = new ObjectStoreRepository((IObjectStore)store, RepositoryKind.S3, "volumebackups");
        var (volume, incremental) = Chain(s, repository);
        ClientsSeeTheRestoredChain(s, repository, incremental, volume);
    }

    [NbdAndSwiftFact]
    public void ASwiftChainReadsAsItsRestoreThroughNbdinfoNbdcopyQemuAndNbdsh()
    {
        using var s = new Scratch();
        using var containers = new SwiftContainers(); // removes the container afterwards
        using var store = new SwiftObjectStore(SwiftContainers.Options(containers.Container, null));
        var repository = new ObjectStoreRepository(store, RepositoryKind.Swift, "volumebackups");
        var (volume, incremental) = Chain(s, repository);
        ClientsSeeTheRestoredChain(s, repository, incremental, volume);
    }

    [NbdFact]
    public void ACorruptObjectIsAnIoErrorOnItsRangeOnlyAndIsLoggedByName()
    {
        using var s = new Scratch();
        var volume = s.PathOf("vol.img");
        var random = new byte[3 << 20];
        new Random(5).NextBytes(random);
        File.WriteAllBytes(volume, random); // every object holds data (none is a zero object)
        var backup = s.Backup(volume).Backup;
        var objects = s.Repository.ReadMetadata(backup).Objects;
        var damaged = objects[1];
        var path = Directory.EnumerateFiles(s.RepoPath, damaged.Name, SearchOption.AllDirectories).Single();
        var bytes = File.ReadAllBytes(path);
        bytes[bytes.Length / 2] ^= 0xff;
        File.WriteAllBytes(path, bytes);

        using var server = new NbdTestServer(BackupBlockReader.Open(s.Repository, backup.Id), s.Dir);
        var (exit, _, error) = NbdClients.Run("nbdcopy", server.Uri, s.PathOf("copy.img"));
        Assert.NotEqual(0, exit);
        Assert.Contains("Input/output error", error);
        Assert.Contains(server.Log, l => l.Contains(damaged.Name, StringComparison.Ordinal) && l.Contains("EIO", StringComparison.Ordinal));

        // The objects before and after still read, and give the backup's bytes.
        var good = new long[] { 0, objects[0].End - 4096, objects[2].Offset, objects[2].Offset + 12288 };
        Assert.Equal(good.Select(o => Sha(random, o, 4096)), NbdClients.RandomReads(server.Uri, good));
        // Within the damaged object, every 4 KiB piece either fails with EIO or gives the backup's
        // bytes: never anything else; and at least the damaged block fails.
        var script = $$"""
            import hashlib
            for o in range({{damaged.Offset}}, {{damaged.End}}, 4096):
                try:
                    print(hashlib.sha256(h.pread(4096, o)).hexdigest())
                except nbd.Error as e:
                    print("EIO" if e.errnum == 5 else "other %s" % e)
            """;
        var (exit2, output, error2) = NbdClients.Nbdsh(server.Uri, script);
        Assert.True(exit2 == 0, error2);
        var pieces = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal((int)(damaged.Length / 4096), pieces.Length);
        Assert.Equal(32768 / 4096, pieces.Count(p => p == "EIO")); // one hash block is damaged, and only it fails
        for (var i = 0; i < pieces.Length; i++)
        {
            Assert.True(pieces[i] == "EIO" || pieces[i] == Sha(random, damaged.Offset + (i * 4096L), 4096), $"piece {i}: {pieces[i]}");
        }
    }

    [NbdFact]
    public void AWritableMountReadsBackItsWritesAndLeavesTheBackupUnchanged()
    {
        using var s = new Scratch();
        var (volume, incremental) = Chain(s, s.Repository);
        var before = s.Snapshot();
        var overlay = s.PathOf("overlay/vol.overlay");
        var expected = File.ReadAllBytes(volume);
        using (var server = new NbdTestServer(new CopyOnWriteOverlay(BackupBlockReader.Open(s.Repository, incremental.Id), overlay), s.Dir))
        {
            Assert.False((bool)JObject.Parse(NbdClients.RunOk("nbdinfo", "--json", server.Uri))["exports"]![0]!["is_read_only"]!);
            // A write of part of two 4 KiB grains (512-byte aligned, the advertised minimum) and a whole-grain one.
            var (wrote, _, writeError) = NbdClients.Nbdsh(server.Uri, "h.pwrite(b'\\xab' * 5120, 3584); h.pwrite(b'\\xcd' * 65536, 1048576); h.flush()");
            Assert.True(wrote == 0, writeError);
            expected.AsSpan(3584, 5120).Fill(0xab);
            expected.AsSpan(1048576, 65536).Fill(0xcd);
            NbdClients.RunOk("nbdcopy", server.Uri, s.PathOf("written.img"));
            Assert.Equal(Convert.ToHexString(SHA256.HashData(expected)), Scratch.Sha(s.PathOf("written.img")));
        }

        Assert.Equal(before, s.Snapshot());
        Assert.True(VerifyOperation.Run(s.Repository, incremental.Id, includeChain: true).IsValid);
    }

    [NbdFact]
    public void AReadOnlyExportRefusesWritesWithEperm()
    {
        using var s = new Scratch();
        var (_, incremental) = Chain(s, s.Repository);
        using var server = new NbdTestServer(BackupBlockReader.Open(s.Repository, incremental.Id), s.Dir);
        // libnbd refuses a write to a read-only export itself; qemu-io with a forced write sends it.
        var (exit, _, error) = NbdClients.Nbdsh(server.Uri, "h.set_strict_mode(0); h.pwrite(b'x' * 512, 0)");
        Assert.NotEqual(0, exit);
        Assert.Contains("Operation not permitted", error);
    }

    [NbdFact]
    public void AMountedBackupCannotBeRemovedWhileOpen()
    {
        using var s = new Scratch();
        var (_, incremental) = Chain(s, s.Repository);
        using (BackupBlockReader.Open(s.Repository, incremental.Id))
        {
            var refused = Assert.Throws<Errors.BackupException>(() => s.Repository.Remove(incremental.Id, includeDependents: false));
            Assert.Contains("mount", refused.Message, StringComparison.OrdinalIgnoreCase);
        }
    }

    /// <summary>A full backup and an incremental of a mixed volume (data, zeros, holes); the volume as of the incremental.</summary>
    private static (string Volume, BackupInfo Incremental) Chain(Scratch s, IChunkedRepository repository)
    {
        var volume = s.MixedVolume("vol.img", VolumeSize, seed: 21);
        var request = new BackupRequest { SourcePath = volume, ObjectSize = 1 << 20, UseSnapshot = false, VolumeId = Guid.Parse("0d8f2a8e-5b38-4d0a-9a3e-7f6a1f0e2c11") };
        BackupOperation.Run(repository, request);
        Scratch.Scribble(volume, seed: 22);
        var incremental = BackupOperation.Run(repository, new BackupRequest { SourcePath = volume, ObjectSize = 1 << 20, UseSnapshot = false, VolumeId = request.VolumeId, Incremental = true }).Backup;
        return (volume, incremental);
    }

    private static void ClientsSeeTheRestoredChain(Scratch s, IChunkedRepository repository, BackupInfo backup, string volume)
    {
        var restored = s.PathOf("restored.img");
        RestoreOperation.Run(repository, new RestoreRequest { BackupId = backup.Id, TargetPath = restored });
        using var server = new NbdTestServer(BackupBlockReader.Open(repository, backup.Id), s.Dir);

        var info = (JObject)JObject.Parse(NbdClients.RunOk("nbdinfo", "--json", server.Uri))["exports"]![0]!;
        Assert.Equal(VolumeSize, (long)info["export-size"]!);
        Assert.True((bool)info["is_read_only"]!);
        Assert.Equal(512, (int)info["block_size_minimum"]!);
        Assert.Equal(32768, (int)info["block_size_preferred"]!);

        var copy = s.PathOf("copy.img");
        NbdClients.RunOk("nbdcopy", server.Uri, copy);
        Assert.Equal(Scratch.Sha(restored), Scratch.Sha(copy));
        Assert.Equal(Scratch.Sha(volume), Scratch.Sha(copy));
        Assert.Contains("Images are identical", NbdClients.RunOk("qemu-img", "compare", "-f", "raw", "-F", "raw", server.Uri, restored));

        var source = File.ReadAllBytes(volume);
        // base:allocation through structured replies: the map tiles the export, has holes and
        // data, and every hole is zeros in the source (nbdcopy above skipped them).
        Assert.True((bool)JObject.Parse(NbdClients.RunOk("nbdinfo", "--json", server.Uri))["structured"]!);
        var map = JArray.Parse(NbdClients.RunOk("nbdinfo", "--map", "--json", server.Uri)).Select(e => (Offset: (long)e["offset"]!, Length: (long)e["length"]!, Type: (int)e["type"]!)).ToList();
        Assert.Equal(0, map[0].Offset);
        Assert.All(map.Zip(map.Skip(1)), p => Assert.Equal(p.First.Offset + p.First.Length, p.Second.Offset));
        Assert.Equal(VolumeSize, map[^1].Offset + map[^1].Length);
        Assert.Contains(map, e => e.Type == 3);
        Assert.Contains(map, e => e.Type == 0);
        Assert.All(map.Where(e => e.Type == 3), e => Assert.True(source.AsSpan((int)e.Offset, (int)e.Length).IndexOfAnyExcept((byte)0) < 0, $"hole at {e.Offset} holds data"));

        var random = new Random(23);
        var offsets = Enumerable.Range(0, 64).Select(_ => random.NextInt64(0, (VolumeSize - 4096) / 512) * 512).ToList();
        Assert.Equal(offsets.Select(o => Sha(source, o, 4096)), NbdClients.RandomReads(server.Uri, offsets));
        Assert.Empty(server.Log);
    }

    private static string Sha(byte[] data, long offset, int length) => Convert.ToHexString(SHA256.HashData(data.AsSpan((int)offset, length))).ToLowerInvariant();
}
