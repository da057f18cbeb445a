using System.Text;
using System.Text.RegularExpressions;
using BlockBackup.Engine.Compression;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Format;
using BlockBackup.Engine.ObjectStores;
using BlockBackup.Engine.Operations;
using BlockBackup.Engine.Repository;
using Xunit;

namespace BlockBackup.Engine.Tests;

/// <summary>
/// The chunked format in Cinder's s3/swift layout over an object store: the same pipelines as the
/// file repository, end to end. Each store's test class derives from this: in memory, on a
/// directory, and S3 and Swift on the real RGW (a fresh bucket/container per test; skipped, with
/// the reason, where no gateway is configured).
/// </summary>
public abstract partial class ObjectStoreRepositoryContract : IDisposable
{
    private readonly Scratch _scratch = new();

    protected abstract IObjectStore Store { get; }

    protected virtual RepositoryKind Kind => RepositoryKind.S3;

    protected ObjectStoreRepository Repository => _repository ??= new ObjectStoreRepository(Store, Kind, "volumebackups");

    private ObjectStoreRepository? _repository;

    public virtual void Dispose()
    {
        _scratch.Dispose();
        GC.SuppressFinalize(this);
    }

    private BackupResult Backup(string volume, bool incremental = false, CompressionAlgorithm compression = CompressionAlgorithm.Zlib) =>
        BackupOperation.Run(Repository, new BackupRequest
        {
            SourcePath = volume, Incremental = incremental, Compression = compression, ObjectSize = 1 << 20, UseSnapshot = false,
            VolumeId = Guid.Parse("6f1c1b7e-4f7a-4a43-9a55-0b8f6f3f2a10"),
        });

    private RestoreResult Restore(Guid id, string target) =>
        RestoreOperation.Run(Repository, new RestoreRequest { BackupId = id, TargetPath = target });

    // The pipelines are synchronous over the async store; so are these helpers (not test methods).
    private void Put(string name, byte[] bytes) =>
        Store.PutAsync(name, new MemoryStream(bytes), bytes.Length, PutOptions.Default, CancellationToken.None).GetAwaiter().GetResult();

    private void Delete(string name) => Store.DeleteAsync(name).GetAwaiter().GetResult();

    private List<string> Names(string prefix = "") =>
        Store.ListAsync(prefix).ToBlockingEnumerable().Select(o => o.Name).ToList();

    [ContractFact]
    public void FullAndIncrementalRestoreByteIdenticallyInCindersLayout()
    {
        var volume = _scratch.MixedVolume("vol.img", (5 << 20) + 4096, seed: 11);
        var full = Backup(volume);
        var fullSha = Scratch.Sha(volume);
        Scratch.Scribble(volume, seed: 12);
        var incremental = Backup(volume, incremental: true);
        Assert.Equal(full.Backup.Id, incremental.Backup.ParentId);
        Assert.True(incremental.BytesBackedUp < full.BytesBackedUp / 2, $"the incremental stored {incremental.BytesBackedUp} of {full.BytesBackedUp} bytes");

        // Cinder's names: volume_<vid>/<ts>/az_nova_backup_<bid>-NNNNN (from 1, in volume order), _sha256file, _metadata; nothing else under the prefix.
        foreach (var b in new[] { full.Backup, incremental.Backup })
        {
            Assert.Matches(new Regex($"^volume_{b.VolumeId:D}/\\d{{14}}/az_nova_backup_{b.Id:D}$"), b.Prefix);
            Assert.Equal("volumebackups", b.Container);
            var names = Names(b.Prefix);
            var metadata = Repository.ReadMetadata(b);
            var expected = metadata.Objects.Select(o => o.Name).Append(b.Prefix + "_metadata").Append(b.Prefix + "_sha256file").Order(StringComparer.Ordinal);
            Assert.Equal(expected, names);
            Assert.Equal(Enumerable.Range(1, metadata.Objects.Count).Select(i => $"{b.Prefix}-{i:D5}"), metadata.Objects.Select(o => o.Name));
            Assert.True(metadata.Objects.Zip(metadata.Objects.Skip(1)).All(p => p.First.End <= p.Second.Offset), "objects in volume order");
        }

        Assert.Empty(Names(".blockbackup/inflight/")); // in-flight records go at commit
        Assert.Empty(Names(".blockbackup/locks/"));    // and locks at the end

        Restore(full.Backup.Id, _scratch.PathOf("full.img"));
        Assert.Equal(fullSha, Scratch.Sha(_scratch.PathOf("full.img")));
        var result = Restore(incremental.Backup.Id, _scratch.PathOf("incr.img"));
        Assert.Equal(RestorePath.Chain, result.Path);
        Assert.Equal(Scratch.Sha(volume), Scratch.Sha(_scratch.PathOf("incr.img")));
        Assert.True(Repository.Verify(incremental.Backup.Id, includeChain: true).IsValid);

        var listed = Repository.List();
        Assert.Equal([full.Backup.Id, incremental.Backup.Id], listed.Select(b => b.Id));
        Assert.Equal(full.Backup.VolumeSize, listed[1].VolumeSize);
        Assert.Equal(2, Repository.GetChain(incremental.Backup.Id).Length);
    }

    [ContractFact]
    public void AReplacedObjectIsCaughtByVerifyAndRefusedByRestore()
    {
        var volume = _scratch.MixedVolume("vol.img", 3 << 20, seed: 21);
        var backup = Backup(volume, compression: CompressionAlgorithm.None).Backup;
        var victim = Repository.ReadMetadata(backup).Objects.First(o => o.Length > 0);
        var forged = new byte[victim.Length];
        new Random(5).NextBytes(forged);
        Put(victim.Name, forged);

        var verification = Repository.Verify(backup.Id, includeChain: true);
        Assert.False(verification.IsValid);
        Assert.Contains(verification.Issues, i => i.ObjectName == victim.Name);
        var error = Assert.Throws<BackupException>(() => Restore(backup.Id, _scratch.PathOf("out.img")));
        Assert.Contains(victim.Name, error.Message, StringComparison.Ordinal);
    }

    [ContractFact]
    public void AMissingObjectIsReportedBeforeAnythingIsWritten()
    {
        var volume = _scratch.MixedVolume("vol.img", 3 << 20, seed: 31);
        var backup = Backup(volume).Backup;
        // A data object (zero objects restore as zeros without being read: the hash list vouches for them).
        var victim = Repository.ReadMetadata(backup).Objects.Last(o => o.Md5 != Convert.ToHexString(System.Security.Cryptography.MD5.HashData(new byte[o.Length])).ToLowerInvariant());
        Delete(victim.Name);

        var error = Assert.Throws<BackupException>(() => Restore(backup.Id, _scratch.PathOf("out.img")));
        Assert.Equal("ObjectMissing", error.ErrorId);
        Assert.False(File.Exists(_scratch.PathOf("out.img")));
        Assert.Contains(Repository.Verify(backup.Id, includeChain: false).Issues, i => i.Problem == VerificationProblem.ObjectMissing);
    }

    [ContractFact]
    public void AnInterruptedBackupNeverListsAndTheNextBackupRemovesItsLeftovers()
    {
        var volume = _scratch.MixedVolume("vol.img", 4 << 20, seed: 41);
        var first = Backup(volume).Backup;
        using (var cancel = new CancellationTokenSource())
        {
            // Stop the second backup once its second data object is stored (of four): the put
            // completes, so the backup itself has to notice, stop and remove what it wrote.
            var interrupted = new ObjectStoreRepository(
                new CancelAfterPutStore(Store, name => !name.StartsWith(first.Prefix, StringComparison.Ordinal) && name.EndsWith("-00002", StringComparison.Ordinal), cancel),
                Kind, "volumebackups");
            Assert.ThrowsAny<OperationCanceledException>(() => BackupOperation.Run(interrupted, new BackupRequest
            {
                SourcePath = volume, Compression = CompressionAlgorithm.Bz2, ObjectSize = 1 << 20, UseSnapshot = false, VolumeId = first.VolumeId,
            }, cancellationToken: cancel.Token));
            Assert.True(cancel.IsCancellationRequested, "the backup reached its second object");
        }

        Assert.All(Names("volume_"), n => Assert.StartsWith(first.Prefix, n, StringComparison.Ordinal)); // a stopped backup removes what it wrote
        Assert.Empty(Names(".blockbackup/inflight/"));

        // A failed backup removes what it wrote; simulate a kill instead by leaving objects and an in-flight record.
        var killedId = Guid.NewGuid();
        var killedPrefix = ObjectNaming.ObjectStorePrefix("", first.VolumeId, DateTime.UtcNow, "nova", killedId);
        Put($".blockbackup/inflight/{killedId:D}.json", Encoding.UTF8.GetBytes($"{{\"backup_id\":\"{killedId:D}\",\"volume_id\":\"{first.VolumeId:D}\"}}"));
        Put(killedPrefix + "-00001", new byte[10]);

        Assert.Equal([first.Id], Repository.List().Select(b => b.Id));
        var incomplete = Assert.Single(Repository.List(includeIncomplete: true), b => b.Status == BackupStatus.Incomplete);
        Assert.Equal(killedId, incomplete.Id);
        Assert.Equal("BlockBackup", incomplete.WrittenBy);

        var next = Backup(volume, incremental: true).Backup;
        Assert.DoesNotContain(Names(), n => n.Contains(killedId.ToString("D"), StringComparison.Ordinal));
        Assert.Equal([first.Id, next.Id], Repository.List(includeIncomplete: true).Select(b => b.Id));
    }

    [ContractFact]
    public void RemovalIsChainAwareAndLeavesOtherBackupsAlone()
    {
        var volume = _scratch.MixedVolume("vol.img", 2 << 20, seed: 51);
        var full = Backup(volume).Backup;
        Scratch.Scribble(volume, seed: 52);
        var incremental = Backup(volume, incremental: true).Backup;
        var other = _scratch.MixedVolume("other.img", 1 << 20, seed: 53);
        var unrelated = BackupOperation.Run(Repository, new BackupRequest { SourcePath = other, ObjectSize = 1 << 20, UseSnapshot = false }).Backup;
        var unrelatedNames = Names(unrelated.Prefix);

        Assert.Equal("BackupHasDependents", Assert.Throws<BackupException>(() => Repository.Remove(full.Id, includeDependents: false)).ErrorId);
        var removed = Repository.Remove(full.Id, includeDependents: true);
        Assert.Equal([incremental.Id, full.Id], removed.Select(b => b.Id));
        Assert.Equal(unrelatedNames, Names("volume_"));
        Assert.Equal([unrelated.Id], Repository.List(includeIncomplete: true).Select(b => b.Id));
    }

    [ContractFact]
    public void DamagedMetadataListsAsDamagedAndBreaksNothingElse()
    {
        var volume = _scratch.MixedVolume("vol.img", 1 << 20, seed: 61);
        var good = Backup(volume).Backup;
        var badId = Guid.NewGuid();
        var badPrefix = ObjectNaming.ObjectStorePrefix("", Guid.NewGuid(), DateTime.UtcNow, "nova", badId);
        var junk = Encoding.UTF8.GetBytes("{\"version\": \"1.0.0\", \"backup_id\": 7");
        Put(badPrefix + "_metadata", junk);

        Assert.Equal([good.Id], Repository.List().Select(b => b.Id));
        var damaged = Assert.Single(Repository.List(includeIncomplete: true), b => b.Status == BackupStatus.Damaged);
        Assert.Contains(badPrefix + "_metadata", damaged.Problem, StringComparison.Ordinal);
        Assert.Equal("BackupDamaged", Assert.Throws<BackupException>(() => Repository.Get(badId)).ErrorId);
        Assert.False(Repository.Verify(badId, includeChain: false).IsValid);
        Restore(good.Id, _scratch.PathOf("out.img"));
        Assert.Equal(Scratch.Sha(volume), Scratch.Sha(_scratch.PathOf("out.img")));
    }

    [ContractFact]
    public void ALiveLockMakesASecondWriterWaitThenFailClearlyAndAStaleOneIsTakenOver()
    {
        var volumeId = Guid.NewGuid();
        Repository.LockTimeout = TimeSpan.FromSeconds(1);
        using (Repository.AcquireLock(volumeId, "backup", CancellationToken.None))
        {
            var error = Assert.Throws<BackupException>(() => Repository.AcquireLock(volumeId, "delete", CancellationToken.None));
            Assert.Equal("VolumeLocked", error.ErrorId);
            Assert.Contains("backup by process", error.Message, StringComparison.Ordinal);
        }

        // A holder killed without releasing: its claim expired, so the next one takes over at once.
        var expired = Encoding.UTF8.GetBytes($"{{\"token\":\"x\",\"operation\":\"backup\",\"host\":\"gone\",\"pid\":1,\"acquired\":\"2020-01-01T00:00:00Z\",\"expires\":\"2020-01-01T00:02:00Z\"}}");
        Put($".blockbackup/locks/volume-{volumeId:D}/0000000000000000001-{Guid.NewGuid():N}", expired);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using (var taken = Repository.AcquireLock(volumeId, "backup", CancellationToken.None))
        {
            Assert.True(taken.IsStillHeld);
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(1));
        }

        Assert.Empty(Names($".blockbackup/locks/volume-{volumeId:D}/"));
    }

    [ContractFact]
    public void AClaimFromAnotherMachineWithTheSameNameIsNotTakenForADeadProcess()
    {
        // Same host name and a PID that does not run here, but another boot or PID namespace (a
        // cloned VM, a container): its PID means nothing here, so only its lease can expire it.
        var volumeId = Guid.NewGuid();
        Repository.LockTimeout = TimeSpan.FromSeconds(1);
        var acquired = DateTime.UtcNow.ToString("O", System.Globalization.CultureInfo.InvariantCulture);
        var expires = DateTime.UtcNow.AddMinutes(2).ToString("O", System.Globalization.CultureInfo.InvariantCulture);
        var claim = Encoding.UTF8.GetBytes($"{{\"token\":\"x\",\"operation\":\"backup\",\"host\":\"{Environment.MachineName}\",\"pid\":{int.MaxValue - 7},\"acquired\":\"{acquired}\",\"expires\":\"{expires}\",\"process_space\":\"another-boot pid:[1]\"}}");
        Put($".blockbackup/locks/volume-{volumeId:D}/0000000000000000001-{Guid.NewGuid():N}", claim);
        Assert.Equal("VolumeLocked", Assert.Throws<BackupException>(() => Repository.AcquireLock(volumeId, "backup", CancellationToken.None)).ErrorId);
    }

    [ContractFact]
    public void RemovalRefusesBackupsARestoreIsReadingAndAKilledReadersClaimExpires()
    {
        var volume = _scratch.MixedVolume("vol.img", 1 << 20, seed: 75);
        var backup = Backup(volume).Backup;
        using (Repository.BeginRead(backup.VolumeId, [backup.Id], "restore", CancellationToken.None))
        {
            var error = Assert.Throws<BackupException>(() => Repository.Remove(backup.Id, includeDependents: false));
            Assert.Equal("BackupInUse", error.ErrorId);
            Assert.Contains("restore by process", error.Message, StringComparison.Ordinal);
        }

        var expired = Encoding.UTF8.GetBytes($"{{\"token\":\"x\",\"operation\":\"restore\",\"host\":\"gone\",\"pid\":1,\"acquired\":\"2020-01-01T00:00:00Z\",\"expires\":\"2020-01-01T00:02:00Z\",\"backups\":[\"{backup.Id:D}\"]}}");
        Put($".blockbackup/readers/volume-{backup.VolumeId:D}/0000000000000000001-{Guid.NewGuid():N}", expired);
        Assert.Equal([backup.Id], Repository.Remove(backup.Id, includeDependents: false).Select(b => b.Id));
        Assert.Empty(Names(".blockbackup/readers/"));
    }

    [ContractTheory]
    [InlineData("2026-01-01T00:00:00Z", "9999-12-31T23:59:59Z")] // expires far beyond one lease
    [InlineData("9999-12-30T00:00:00Z", "9999-12-30T00:02:00Z")] // a lease's length, acquired far in the future
    public void AForgedLeaseThatNeverExpiresBlocksNeitherBackupNorRemoval(string acquired, string expires)
    {
        var volume = _scratch.MixedVolume("vol.img", 1 << 20, seed: 77);
        var backup = Backup(volume).Backup;
        Repository.LockTimeout = TimeSpan.FromSeconds(1);
        string Forged(string operation) =>
            $"{{\"token\":\"x\",\"operation\":\"{operation}\",\"host\":\"elsewhere\",\"pid\":4242,\"acquired\":\"{acquired}\",\"expires\":\"{expires}\",\"backups\":[\"{backup.Id:D}\"]}}";
        var locks = $".blockbackup/locks/volume-{backup.VolumeId:D}/";
        var readers = $".blockbackup/readers/volume-{backup.VolumeId:D}/";
        Put($"{locks}0000000000000000001-{Guid.NewGuid():N}", Encoding.UTF8.GetBytes(Forged("backup")));
        Put($"{readers}0000000000000000001-{Guid.NewGuid():N}", Encoding.UTF8.GetBytes(Forged("restore")));

        var next = Backup(volume, incremental: true).Backup;
        Put($"{locks}0000000000000000002-{Guid.NewGuid():N}", Encoding.UTF8.GetBytes(Forged("backup")));
        Assert.Equal([next.Id, backup.Id], Repository.Remove(backup.Id, includeDependents: true).Select(b => b.Id));
        Assert.Empty(Names(locks));
        Assert.Empty(Names(readers));
    }

    [ContractFact]
    public void TheExportedRecordNamesTheBucketAndPrefixForCindersDriver()
    {
        var volume = _scratch.MixedVolume("vol.img", 1 << 20, seed: 71);
        var backup = Backup(volume).Backup;
        var record = Repository.ExportRecord(backup.Id);
        var row = Newtonsoft.Json.Linq.JObject.Parse(Encoding.UTF8.GetString(Convert.FromBase64String(record.BackupUrl)));
        Assert.Equal(Kind == RepositoryKind.S3 ? CinderBackupRecord.S3Service : CinderBackupRecord.SwiftService, record.BackupService);
        Assert.Equal("volumebackups", (string?)row["container"]);
        Assert.Equal(backup.Prefix, (string?)row["service_metadata"]);
    }
}

public sealed class MemoryObjectStoreRepositoryTests : ObjectStoreRepositoryContract
{
    protected override IObjectStore Store { get; } = new MemoryObjectStore();
}

/// <summary>The object-store layout on a directory: what a bucket mounted as files, or the POSIX store's rename protocol, gives.</summary>
public sealed class PosixObjectStoreRepositoryTests : ObjectStoreRepositoryContract
{
    private readonly Scratch _dir = new();

    public PosixObjectStoreRepositoryTests() => Store = new PosixObjectStore(_dir.PathOf("bucket"));

    protected override IObjectStore Store { get; }

    protected override RepositoryKind Kind => RepositoryKind.Swift;

    public override void Dispose()
    {
        _dir.Dispose();
        base.Dispose();
    }
}

public sealed class S3ObjectStoreRepositoryTests : ObjectStoreRepositoryContract
{
    private readonly IObjectStore? _store = SkipReason is null ? S3StoreLoader.Create(S3Buckets.Options(ObjectStoreServers.NewName("s3repo"))) : null;

    public static string? SkipReason => ObjectStoreServers.S3SkipReason;

    protected override IObjectStore Store => _store!;

    public override void Dispose()
    {
        (_store as IDisposable)?.Dispose();
        base.Dispose();
    }
}

public sealed class SwiftObjectStoreRepositoryTests : ObjectStoreRepositoryContract
{
    private readonly SwiftObjectStore? _store = SkipReason is null ? new SwiftObjectStore(SwiftContainers.Options(ObjectStoreServers.NewName("swrepo"), null)) : null;

    public static string? SkipReason => ObjectStoreServers.SwiftSkipReason;

    protected override IObjectStore Store => _store!;

    protected override RepositoryKind Kind => RepositoryKind.Swift;

    public override void Dispose()
    {
        _store?.Dispose();
        base.Dispose();
    }
}
