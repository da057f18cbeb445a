using BlockBackup.Engine.Compression;
using BlockBackup.Engine.Operations;
using Xunit;

namespace BlockBackup.Engine.Tests;

/// <summary>Marks tests that run OpenStack Cinder's real posix backup driver; skipped where python3-cinder is absent.</summary>
public sealed class CinderFactAttribute : FactAttribute
{
    public CinderFactAttribute()
    {
        if (!CinderDriver.Available)
        {
            Skip = "OpenStack Cinder's backup driver is not installed (Debian: apt-get install python3-cinder python3-zstd)";
        }
    }
}

internal static class CinderDriver
{
    private const string Python = "/usr/bin/python3";
    private static readonly string Script = Path.Combine(AppContext.BaseDirectory, "interop", "cinder_driver.py");

    public static bool Available { get; } = File.Exists(Python) && Shell.Run(Python, Script, "probe").Code == 0;

    public static bool HasZstd { get; } = Available && Shell.Run(Python, "-c", "import zstd").Code == 0;

    public static void Run(params string[] args)
    {
        var (code, output) = Shell.Run(Python, [Script, .. args]);
        Assert.True(code == 0, $"Cinder's driver failed ({string.Join(' ', args)}):\n{output}");
    }
}

public class CinderInteropTests
{
    [CinderFact]
    public void CinderRestoresBlockBackupChainsOntoNewAndDirtyVolumes()
    {
        using var s = new Scratch();
        var volume = s.MixedVolume("vol.img", 24 << 20, seed: 31);
        var compressions = new List<CompressionAlgorithm> { CompressionAlgorithm.Zlib, CompressionAlgorithm.Bz2, CompressionAlgorithm.None };
        if (CinderDriver.HasZstd && Zstd.IsAvailable)
        {
            compressions.Add(CompressionAlgorithm.Zstd);
        }

        var last = s.Backup(volume, compression: compressions[0], objectSize: 4 << 20).Backup;
        foreach (var compression in compressions.Skip(1))
        {
            Scratch.Scribble(volume, seed: (int)compression + 40, writes: 20);
            last = s.Backup(volume, incremental: true, compression: compression, objectSize: 4 << 20).Backup;
        }

        var fresh = s.PathOf("cinder-new.img");
        CinderDriver.Run("restore", s.RepoPath, last.Id.ToString(), fresh);
        Assert.Equal(Scratch.Sha(volume), Scratch.Sha(fresh));

        // A block device is never truncated: Cinder writes over old data, which our zero-covering objects must overwrite.
        var dirty = s.PathOf("cinder-dirty.img");
        var junk = new byte[24 << 20];
        new Random(9).NextBytes(junk);
        File.WriteAllBytes(dirty, junk);
        CinderDriver.Run("restore", s.RepoPath, last.Id.ToString(), dirty, "--keep-target");
        Assert.Equal(Scratch.Sha(volume), Scratch.Sha(dirty));
    }

    [CinderFact]
    public void BlockBackupRestoresAndVerifiesCinderChains()
    {
        using var s = new Scratch();
        var volume = s.MixedVolume("vol.img", 16 << 20, seed: 32);
        var volumeId = Guid.NewGuid();
        var full = Guid.NewGuid();
        CinderDriver.Run("backup", volume, s.RepoPath, full.ToString(), volumeId.ToString(), "--file-size", (4 << 20).ToString());
        var states = new List<(Guid Id, string Sha)> { (full, Scratch.Sha(volume)) };
        var algorithms = CinderDriver.HasZstd && Zstd.IsAvailable ? new[] { "bz2", "zstd", "none" } : ["bz2", "none"];
        foreach (var algorithm in algorithms)
        {
            Scratch.Scribble(volume, seed: algorithm.Length + 50, writes: 20);
            var id = Guid.NewGuid();
            CinderDriver.Run("backup", volume, s.RepoPath, id.ToString(), volumeId.ToString(), "--parent", states[^1].Id.ToString(), "--compression", algorithm, "--file-size", (4 << 20).ToString());
            states.Add((id, Scratch.Sha(volume)));
        }

        var listed = s.Repository.List();
        Assert.Equal(states.Select(x => x.Id), listed.Select(b => b.Id));
        Assert.All(listed, b => Assert.Equal("Cinder", b.WrittenBy));
        Assert.All(listed, b => Assert.Equal(16 << 20, b.VolumeSize));
        Assert.Equal(states[^1].Id, s.Repository.FindLatest(volumeId)!.Id);

        foreach (var (id, sha) in states)
        {
            var target = s.PathOf($"{id}.img");
            s.Restore(id, target);
            Assert.Equal(sha, Scratch.Sha(target));
        }

        var verification = VerifyOperation.Run(s.Repository, states[^1].Id, includeChain: true);
        Assert.True(verification.IsValid, string.Join("\n", verification.Issues));

        // An incremental by BlockBackup on top of Cinder's chain, restored by Cinder.
        Scratch.Scribble(volume, seed: 77);
        var ours = BackupOperation.Run(s.Repository, new BackupRequest { SourcePath = volume, VolumeId = volumeId, Incremental = true, UseSnapshot = false, ObjectSize = 4 << 20 }).Backup;
        Assert.Equal(states[^1].Id, ours.ParentId);
        var cinderOut = s.PathOf("mixed-chain.img");
        CinderDriver.Run("restore", s.RepoPath, ours.Id.ToString(), cinderOut);
        Assert.Equal(Scratch.Sha(volume), Scratch.Sha(cinderOut));
    }
}
