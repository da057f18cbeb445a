using System.Diagnostics;
using BlockBackup.Engine.Compression;
using BlockBackup.Engine.Operations;
using BlockBackup.Engine.Repository;
using Xunit;

namespace BlockBackup.Engine.Tests;

/// <summary>Repositories on the test RADOS Gateway (<see cref="ObjectStoreServers"/>), opened as the cmdlets open them.</summary>
internal static class RgwRepositories
{
    public static string NewContainer(string purpose) => $"bbtest-{purpose}-{Guid.NewGuid():N}"[..40];

    public static ObjectStoreRepository Open(RepositoryKind kind, string container)
    {
        var connection = kind == RepositoryKind.S3
            ? new ObjectStoreConnection(ObjectStoreServers.S3Endpoint!, ObjectStoreServers.S3AccessKey!, ObjectStoreServers.S3SecretKey!)
            : new ObjectStoreConnection(ObjectStoreServers.SwiftAuthUrl!, ObjectStoreServers.SwiftUser!, ObjectStoreServers.SwiftKey!);
        var scheme = kind == RepositoryKind.S3 ? "s3" : "swift";
        return (ObjectStoreRepository)RepositoryFactory.Open(new RepositoryLocation(kind, $"{scheme}://{container}") { Connection = connection }, () => throw new InvalidOperationException(), create: true); // tests back up into a fresh container
    }
}

/// <summary>A test that needs the RADOS Gateway and Cinder's own s3/swift drivers (python3-cinder, python3-boto3, python3-swiftclient).</summary>
public sealed class CinderObjectStoreFactAttribute : FactAttribute
{
    public CinderObjectStoreFactAttribute()
    {
        if ((ObjectStoreServers.S3SkipReason ?? ObjectStoreServers.SwiftSkipReason) is { } reason)
        {
            Skip = reason;
        }
        else if (!CinderObjectStoreDriver.Available)
        {
            Skip = "Cinder's s3/swift backup drivers cannot run here (Debian: apt-get install python3-cinder python3-boto3 python3-swiftclient)";
        }
    }
}

/// <summary>Runs Cinder's real s3 or swift backup driver (interop/cinder_s3.py, cinder_swift.py) against the test RGW.</summary>
internal static class CinderObjectStoreDriver
{
    private const string Python = "/usr/bin/python3";

    public static bool Available { get; } = File.Exists(Python) && Shell.Run(Python, "-c", "import cinder.backup.drivers.s3, cinder.backup.drivers.swift, boto3, swiftclient").Code == 0;

    public static bool HasZstd { get; } = Available && Shell.Run(Python, "-c", "import zstd").Code == 0;

    /// <summary>Runs a harness command with the gateway's connection in its environment; its fake Cinder database is <paramref name="db"/>.</summary>
    public static string Run(RepositoryKind kind, string container, string db, params string[] args)
    {
        var script = Path.Combine(AppContext.BaseDirectory, "interop", kind == RepositoryKind.S3 ? "cinder_s3.py" : "cinder_swift.py");
        var psi = new ProcessStartInfo(Python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(script);
        foreach (var a in args.Concat(["--container", container, "--db", db]))
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["RGW_ENDPOINT"] = ObjectStoreServers.S3Endpoint;
        psi.Environment["S3_ACCESS_KEY"] = ObjectStoreServers.S3AccessKey;
        psi.Environment["S3_SECRET_KEY"] = ObjectStoreServers.S3SecretKey;
        psi.Environment["SWIFT_AUTH_URL"] = ObjectStoreServers.SwiftAuthUrl;
        psi.Environment["SWIFT_USER"] = ObjectStoreServers.SwiftUser;
        psi.Environment["SWIFT_KEY"] = ObjectStoreServers.SwiftKey;
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        var stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0, $"Cinder's {kind} driver failed ({string.Join(' ', args)}):\n{stdout}\n{stderr.Result}");
        return stdout;
    }
}

/// <summary>
/// Both directions against Cinder's real s3 and swift drivers on the real RGW: Cinder restores
/// BlockBackup's chains byte-identically (onto a dirty target too), BlockBackup restores and
/// verifies Cinder's (every compression, an odd volume size), and chains mixing both tools work in both.
/// </summary>
public class ObjectStoreInteropTests
{
    private const int ObjectSize = 1 << 20;

    private static List<CompressionAlgorithm> Compressions()
    {
        var list = new List<CompressionAlgorithm> { CompressionAlgorithm.Zlib, CompressionAlgorithm.Bz2, CompressionAlgorithm.None };
        if (CinderObjectStoreDriver.HasZstd && Zstd.IsAvailable)
        {
            list.Add(CompressionAlgorithm.Zstd);
        }

        return list;
    }

    [CinderObjectStoreFact]
    public void CinderS3RestoresBlockBackupChainsOntoNewAndDirtyVolumes() => CinderRestoresBlockBackup(RepositoryKind.S3);

    [CinderObjectStoreFact]
    public void CinderSwiftRestoresBlockBackupChainsOntoNewAndDirtyVolumes() => CinderRestoresBlockBackup(RepositoryKind.Swift);

    [CinderObjectStoreFact]
    public void BlockBackupRestoresCinderS3ChainsAndCinderRestoresMixedOnes() => BlockBackupRestoresCinder(RepositoryKind.S3);

    [CinderObjectStoreFact]
    public void BlockBackupRestoresCinderSwiftChainsAndCinderRestoresMixedOnes() => BlockBackupRestoresCinder(RepositoryKind.Swift);

    private static void CinderRestoresBlockBackup(RepositoryKind kind)
    {
        using var s = new Scratch();
        var container = RgwRepositories.NewContainer("to-cinder");
        using var repository = RgwRepositories.Open(kind, container);
        var volume = s.MixedVolume("vol.img", (9 << 20) + 12288, seed: 81);
        var volumeId = Guid.NewGuid();
        BackupInfo? last = null;
        foreach (var compression in Compressions())
        {
            if (last is not null)
            {
                Scratch.Scribble(volume, seed: (int)compression + 80, writes: 20);
            }

            last = BackupOperation.Run(repository, new BackupRequest
            {
                SourcePath = volume, VolumeId = volumeId, Incremental = last is not null, Compression = compression, ObjectSize = ObjectSize, UseSnapshot = false,
            }).Backup;
        }

        var db = s.PathOf("cinder-db");
        Assert.Contains($"registered {Compressions().Count} backups", CinderObjectStoreDriver.Run(kind, container, db, "register"), StringComparison.Ordinal);
        var fresh = s.PathOf("cinder-new.img");
        CinderObjectStoreDriver.Run(kind, container, db, "restore", last!.Id.ToString(), fresh);
        Assert.Equal(Scratch.Sha(volume), Scratch.Sha(fresh));

        // A block device is never truncated: Cinder writes over old data, which our zero-covering objects must overwrite.
        var dirty = s.PathOf("cinder-dirty.img");
        var junk = new byte[new FileInfo(volume).Length];
        new Random(9).NextBytes(junk);
        File.WriteAllBytes(dirty, junk);
        CinderObjectStoreDriver.Run(kind, container, db, "restore", last.Id.ToString(), dirty, "--keep-target");
        Assert.Equal(Scratch.Sha(volume), Scratch.Sha(dirty));
    }

    private static void BlockBackupRestoresCinder(RepositoryKind kind)
    {
        using var s = new Scratch();
        var container = RgwRepositories.NewContainer("from-cinder");
        var db = s.PathOf("cinder-db");
        var volume = s.MixedVolume("vol.img", (7 << 20) + 4096 * 3, seed: 91);
        var volumeId = Guid.NewGuid();
        var states = new List<(Guid Id, string Sha)>();
        Guid? parent = null;
        foreach (var compression in Compressions())
        {
            if (parent is not null)
            {
                Scratch.Scribble(volume, seed: (int)compression + 90, writes: 20);
            }

            var id = Guid.NewGuid();
            string[] args = ["backup", volume, "--id", id.ToString(), "--volume-id", volumeId.ToString(), "--object-size", ObjectSize.ToString(System.Globalization.CultureInfo.InvariantCulture), "--compression", CompressionNames.ToMetadataName(compression)];
            CinderObjectStoreDriver.Run(kind, container, db, parent is { } p ? [.. args, "--parent", p.ToString()] : args);
            states.Add((id, Scratch.Sha(volume)));
            parent = id;
        }

        using var repository = RgwRepositories.Open(kind, container);
        Assert.Equal(states.Select(x => x.Id), repository.List().Select(b => b.Id));
        Assert.All(repository.List(), b => Assert.Equal("Cinder", b.WrittenBy));
        for (var i = 0; i < states.Count; i++)
        {
            var target = s.PathOf($"point-{i}.img");
            RestoreOperation.Run(repository, new RestoreRequest { BackupId = states[i].Id, TargetPath = target });
            Assert.Equal(states[i].Sha, Scratch.Sha(target));
        }

        Assert.True(repository.Verify(states[^1].Id, includeChain: true).IsValid);

        // A chain mixing both tools: BlockBackup's incremental on Cinder's chain, restored by Cinder.
        Scratch.Scribble(volume, seed: 99, writes: 20);
        var ours = BackupOperation.Run(repository, new BackupRequest { SourcePath = volume, VolumeId = volumeId, Incremental = true, ObjectSize = ObjectSize, UseSnapshot = false }).Backup;
        Assert.Equal(states[^1].Id, ours.ParentId);
        CinderObjectStoreDriver.Run(kind, container, db, "register");
        var mixed = s.PathOf("mixed.img");
        CinderObjectStoreDriver.Run(kind, container, db, "restore", ours.Id.ToString(), mixed);
        Assert.Equal(Scratch.Sha(volume), Scratch.Sha(mixed));
        RestoreOperation.Run(repository, new RestoreRequest { BackupId = ours.Id, TargetPath = s.PathOf("mixed-ours.img") });
        Assert.Equal(Scratch.Sha(volume), Scratch.Sha(s.PathOf("mixed-ours.img")));
    }
}
