using BlockBackup.Engine.Errors;
using BlockBackup.Engine.ObjectStores;
using BlockBackup.Engine.Operations;
using BlockBackup.Engine.Repository;
using Xunit;

namespace BlockBackup.Engine.Tests;

/// <summary>
/// The lease tests shorten ObjectStoreLock's lease for the whole process: nothing else may run
/// beside them (a backup elsewhere could lose its lock on a busy machine).
/// </summary>
[CollectionDefinition(nameof(ShortLeases), DisableParallelization = true)]
public sealed class ShortLeases;

/// <summary>
/// A backup whose lease lapses (frozen, as a process under SIGSTOP or a VM pause is, at a chosen
/// point) while a second backup of the volume takes the volume over and removes it as a leftover:
/// whatever lists as available restores byte-identically, and the frozen one either fails with
/// VolumeLockLost or, when it had committed before the cleanup looked, is complete. In process,
/// with a lease of seconds; the second backup waits for the lease to run out, not for a timer.
/// </summary>
[Collection(nameof(ShortLeases))]
public abstract class LeaseFencingContract : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(3);
    private readonly Scratch _scratch = new();
    private readonly TimeSpan _lease = ObjectStoreLock.LeaseDuration;
    private readonly TimeSpan _renewal = ObjectStoreLock.RenewInterval;

    protected LeaseFencingContract()
    {
        // Long enough that a busy two-core machine still renews in time while nothing is frozen.
        ObjectStoreLock.LeaseDuration = TimeSpan.FromSeconds(6);
        ObjectStoreLock.RenewInterval = TimeSpan.FromSeconds(1);
    }

    protected abstract IObjectStore Store { get; }

    protected virtual RepositoryKind Kind => RepositoryKind.S3;

    public virtual void Dispose()
    {
        ObjectStoreLock.LeaseDuration = _lease;
        ObjectStoreLock.RenewInterval = _renewal;
        _scratch.Dispose();
        GC.SuppressFinalize(this);
    }

    private ObjectStoreRepository Repository(IObjectStore store) => new(store, Kind, "volumebackups") { LockTimeout = Patience };

    private static BackupRequest Request(string volume, Guid volumeId, bool incremental, List<string>? log = null) => new()
    {
        SourcePath = volume, VolumeId = volumeId, Incremental = incremental, ObjectSize = 1 << 20, UseSnapshot = false, Workers = 1,
        Log = log is null ? null : line => { lock (log) { log.Add(line); } },
    };

    /// <summary>
    /// A full backup, then a backup frozen at <paramref name="freezing"/>'s point, then (its lease
    /// lapsed) an incremental by another process that removes leftovers; then the frozen one goes
    /// on. With <paramref name="cleanerFreezing"/>, the second one is frozen too, at that point,
    /// and goes on only once the first one has finished.
    /// </summary>
    private (Exception? Frozen, BackupResult? FrozenResult, BackupResult Second, List<string> Log, string Volume) Race(
        Func<IObjectStore, FreezingStore> freezing, Func<IObjectStore, FreezingStore>? cleanerFreezing = null)
    {
        var volume = _scratch.MixedVolume("vol.img", 4 << 20, seed: 91);
        var volumeId = Guid.NewGuid();
        BackupOperation.Run(Repository(Store), Request(volume, volumeId, incremental: false));

        var frozenStore = freezing(Store);
        var cleanerStore = cleanerFreezing?.Invoke(Store);
        try
        {
            var first = Task.Run(() => BackupOperation.Run(Repository(frozenStore), Request(volume, volumeId, incremental: false)));
            WaitFrozen(frozenStore, first, "the first backup");

            var log = new List<string>();
            var second = Task.Run(() => BackupOperation.Run(Repository(cleanerStore ?? Store), Request(volume, volumeId, incremental: true, log)));
            if (cleanerStore is null)
            {
                Assert.True(second.Wait(Patience), "the second backup finished");
            }
            else
            {
                WaitFrozen(cleanerStore, second, "the second backup");
            }

            frozenStore.Resume();
            var outcome = Record.Exception(() => first.GetAwaiter().GetResult());
            cleanerStore?.Resume();
            return (outcome, outcome is null ? first.Result : null, second.GetAwaiter().GetResult(), log, volume);
        }
        finally
        {
            // Whatever failed, nothing stays frozen for the tests after this one.
            frozenStore.Resume();
            cleanerStore?.Resume();
        }
    }

    private static void WaitFrozen(FreezingStore store, Task<BackupResult> backup, string which)
    {
        Assert.True(store.WaitFrozen(Patience) || backup.IsCompleted, $"{which} reached the point where it is frozen");
        Assert.False(backup.IsCompleted, $"{which} was frozen, not finished: {backup.Exception?.GetBaseException().Message}");
    }

    /// <summary>Every backup listed as available restores to the volume (which did not change), and verifies with its chain.</summary>
    private void AssertAvailableBackupsAreWhole(string volume)
    {
        var repository = Repository(Store);
        var listed = repository.List();
        Assert.NotEmpty(listed);
        foreach (var backup in listed)
        {
            var target = _scratch.PathOf($"restore-{backup.Id:N}.img");
            RestoreOperation.Run(repository, new RestoreRequest { BackupId = backup.Id, TargetPath = target });
            Assert.Equal(Scratch.Sha(volume), Scratch.Sha(target));
            Assert.True(repository.Verify(backup.Id, includeChain: true).IsValid, $"backup {backup.Id} verifies");
        }
    }

    private static void AssertLockLost(Exception? outcome, BackupResult second)
    {
        var error = Assert.IsType<BackupException>(outcome);
        Assert.Equal("VolumeLockLost", error.ErrorId);
        Assert.Contains(second.Backup.VolumeId.ToString(), error.Message, StringComparison.Ordinal);
        Assert.Contains("volumebackups", error.Message, StringComparison.Ordinal);
        Assert.Contains("run the backup again", error.Message, StringComparison.Ordinal);
    }

    [ContractFact]
    public void ABackupFrozenBeforeItsCommitFailsAndWhatListsIsWhole()
    {
        // Frozen once its last data object (of four, one worker: in order) is stored.
        var (outcome, _, second, log, volume) = Race(store => new FreezingStore(store, afterPut: name => name.EndsWith("-00004", StringComparison.Ordinal) && !name.Contains(".blockbackup", StringComparison.Ordinal)));
        AssertLockLost(outcome, second);
        Assert.Contains(log, l => l.StartsWith("Removed the leftover of interrupted backup", StringComparison.Ordinal));
        Assert.Equal(2, Repository(Store).List().Count);
        AssertAvailableBackupsAreWhole(volume);
    }

    [ContractFact]
    public void ABackupFrozenJustBeforeItsMetadataPutRetractsItAndFails()
    {
        // Past its own checks (lock, record, objects): only the check after the metadata put can see the cleanup.
        var (outcome, _, second, log, volume) = Race(store => new FreezingStore(store, beforePut: name => name.EndsWith("_metadata", StringComparison.Ordinal)));
        AssertLockLost(outcome, second);
        Assert.Contains(log, l => l.StartsWith("Removed the leftover of interrupted backup", StringComparison.Ordinal));
        Assert.Equal(2, Repository(Store).List(includeIncomplete: true).Count); // nothing of the frozen one is left
        AssertAvailableBackupsAreWhole(volume);
    }

    [ContractFact]
    public void ABackupThatStoresItsMetadataWhileTheCleanupHasFencedItRetractsItAndFails()
    {
        // The cleanup has fenced the record (and not yet looked for the metadata) when the frozen
        // backup stores its metadata and reads its record: it sees the fence and retracts; the
        // cleanup then finds no metadata and removes the rest.
        var (outcome, _, second, log, volume) = Race(
            store => new FreezingStore(store, beforePut: name => name.EndsWith("_metadata", StringComparison.Ordinal)),
            store => new FreezingStore(store, afterPut: name => name.StartsWith(".blockbackup/inflight/", StringComparison.Ordinal)));
        AssertLockLost(outcome, second);
        Assert.Contains("fenced", outcome!.Message, StringComparison.Ordinal);
        Assert.Contains(log, l => l.StartsWith("Removed the leftover of interrupted backup", StringComparison.Ordinal));
        Assert.Equal(2, Repository(Store).List(includeIncomplete: true).Count);
        AssertAvailableBackupsAreWhole(volume);
    }

    [ContractFact]
    public void ABackupFrozenBetweenItsMetadataPutAndItsCheckIsLeftAloneAndCompletes()
    {
        // Its metadata is in place when the cleanup looks: it committed, so nothing of it goes,
        // and the incremental is based on it.
        var (outcome, result, second, log, volume) = Race(store => new FreezingStore(store, afterPut: name => name.EndsWith("_metadata", StringComparison.Ordinal)));
        Assert.Null(outcome);
        Assert.DoesNotContain(log, l => l.StartsWith("Removed the leftover", StringComparison.Ordinal));
        Assert.Equal(result!.Backup.Id, second.Backup.ParentId);
        Assert.Contains(Repository(Store).List(), b => b.Id == result.Backup.Id);
        Assert.Empty(Store.ListAsync(".blockbackup/inflight/").ToBlockingEnumerable());
        AssertAvailableBackupsAreWhole(volume);
    }

    [ContractFact]
    public void ARenewalNeverWritesBackAClaimAContenderDeletedAndTheLockStaysLost()
    {
        var volumeId = Guid.NewGuid();
        var prefix = $".blockbackup/locks/volume-{volumeId:D}/";
        var gate = new RenewalGate(Store, prefix);
        using var volumeLock = Repository(gate).AcquireLock(volumeId, "backup", CancellationToken.None);
        var key = Assert.Single(Store.ListAsync(prefix).ToBlockingEnumerable()).Name;
        byte[] claim;
        using (var stream = Store.GetAsync(key).GetAwaiter().GetResult())
        {
            var copy = new MemoryStream();
            stream.CopyTo(copy);
            claim = copy.ToArray();
        }

        // Between two renewals (one finished, the next one held before it reaches the store), a
        // contender that judged the lease expired deletes the claim.
        Assert.True(gate.WaitHeld(Patience), "a renewal came");
        Store.DeleteAsync(key).GetAwaiter().GetResult();
        Assert.True(gate.ReleaseAndWait(Patience), "the held renewal went on");
        Assert.Null(Store.StatAsync(key).GetAwaiter().GetResult());
        Assert.False(volumeLock.IsStillHeld);

        // Lost for good, even should the very claim come back.
        Store.PutAsync(key, new MemoryStream(claim), claim.Length, PutOptions.Default, CancellationToken.None).GetAwaiter().GetResult();
        Assert.False(volumeLock.IsStillHeld);
    }

    /// <summary>
    /// Passes everything through; once a renewal's put of a claim under the prefix has completed,
    /// holds the next call on that claim (the next renewal's first step) until released.
    /// </summary>
    private sealed class RenewalGate(IObjectStore inner, string prefix) : IObjectStore
    {
        private readonly ManualResetEventSlim _held = new();
        private readonly ManualResetEventSlim _release = new();
        private readonly ManualResetEventSlim _done = new();
        private int _puts;
        private int _state; // 0 passing, 1 hold the next call, 2 held one taken

        public ObjectStoreProperties Properties => inner.Properties;

        public bool WaitHeld(TimeSpan timeout) => _held.Wait(timeout);

        public bool ReleaseAndWait(TimeSpan timeout)
        {
            _release.Set();
            return _done.Wait(timeout);
        }

        public async Task PutAsync(string name, Stream content, long length, PutOptions options, CancellationToken cancellationToken)
        {
            var held = Hold(name);
            await inner.PutAsync(name, content, length, options, cancellationToken).ConfigureAwait(false);
            Passed(name, held, put: true);
        }

        public async Task<Stream> GetAsync(string name, long offset = 0, long? length = null, CancellationToken cancellationToken = default)
        {
            var held = Hold(name);
            try
            {
                return await inner.GetAsync(name, offset, length, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                Passed(name, held, put: false);
            }
        }

        public Task<ObjectInfo?> StatAsync(string name, CancellationToken cancellationToken = default) => inner.StatAsync(name, cancellationToken);

        public IAsyncEnumerable<ObjectInfo> ListAsync(string prefix, CancellationToken cancellationToken = default) => inner.ListAsync(prefix, cancellationToken);

        public Task DeleteAsync(string name, CancellationToken cancellationToken = default) => inner.DeleteAsync(name, cancellationToken);

        public Task DeleteUnlistedAsync(string prefix, Func<string, bool> isOwned, CancellationToken cancellationToken = default) =>
            inner.DeleteUnlistedAsync(prefix, isOwned, cancellationToken);

        public Task FlushAsync(CancellationToken cancellationToken = default) => inner.FlushAsync(cancellationToken);

        private bool Hold(string name)
        {
            if (!name.StartsWith(prefix, StringComparison.Ordinal) || Interlocked.CompareExchange(ref _state, 2, 1) != 1)
            {
                return false;
            }

            _held.Set();
            _release.Wait();
            return true;
        }

        private void Passed(string name, bool held, bool put)
        {
            if (held)
            {
                _done.Set();
            }
            else if (put && name.StartsWith(prefix, StringComparison.Ordinal) && Interlocked.Increment(ref _puts) == 2)
            {
                Interlocked.CompareExchange(ref _state, 1, 0); // the first renewal is over (the first put was the claim itself)
            }
        }
    }
}

public sealed class MemoryLeaseFencingTests : LeaseFencingContract
{
    protected override IObjectStore Store { get; } = new MemoryObjectStore();
}

public sealed class S3LeaseFencingTests : LeaseFencingContract
{
    private readonly IObjectStore? _store = SkipReason is null ? S3StoreLoader.Create(S3Buckets.Options(ObjectStoreServers.NewName("s3fence"))) : null;

    public static string? SkipReason => ObjectStoreServers.S3SkipReason;

    protected override IObjectStore Store => _store!;

    public override void Dispose()
    {
        (_store as IDisposable)?.Dispose();
        base.Dispose();
    }
}

public sealed class SwiftLeaseFencingTests : LeaseFencingContract
{
    private readonly SwiftObjectStore? _store = SkipReason is null ? new SwiftObjectStore(SwiftContainers.Options(ObjectStoreServers.NewName("swfence"), null)) : null;

    public static string? SkipReason => ObjectStoreServers.SwiftSkipReason;

    protected override IObjectStore Store => _store!;

    protected override RepositoryKind Kind => RepositoryKind.Swift;

    public override void Dispose()
    {
        _store?.Dispose();
        base.Dispose();
    }
}

/// <summary>
/// A backup whose clock runs 10 minutes behind (libfaketime around a bbk child: its leases look
/// expired to everyone else from the start), stopped with SIGSTOP once it has stored objects,
/// while a backup with the right clock runs: whatever lists as available restores byte-identically,
/// and the skewed one fails with VolumeLockLost or, had it committed before it was stopped, is complete.
/// Where exactly the signal stops it is not chosen (the in-process LeaseFencingContract forces each
/// interleaving); what is checked holds at any point.
/// </summary>
[Collection(nameof(ShortLeases))]
public sealed class SkewedClockLeaseTests(Xunit.Abstractions.ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(3);
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    [S3Fact]
    public void ABackupWhoseClockIsTenMinutesBehindNeverListsIncomplete()
    {
        Assert.True(File.Exists("/usr/bin/faketime"), "faketime is installed (Debian package faketime)");
        var bucket = ObjectStoreServers.NewName("s3skew");
        var store = S3StoreLoader.Create(S3Buckets.Options(bucket));
        using var repository = new ObjectStoreRepository(store, RepositoryKind.S3, bucket) { LockTimeout = Patience }; // closes the store
        var volume = _scratch.MixedVolume("vol.img", 24 << 20, seed: 93);
        var full = BackupOperation.Run(repository, new BackupRequest { SourcePath = volume, ObjectSize = 1 << 20, UseSnapshot = false }).Backup;

        var environment = new Dictionary<string, string>
        {
            ["AWS_ENDPOINT_URL"] = ObjectStoreServers.S3Endpoint!,
            ["AWS_ACCESS_KEY_ID"] = ObjectStoreServers.S3AccessKey!,
            ["AWS_SECRET_ACCESS_KEY"] = ObjectStoreServers.S3SecretKey!,
            ["BLOCKBACKUP_CONFIG_DIR"] = _scratch.PathOf("config"),
        };
        using var skewed = Bbk.StartUnder(environment, "faketime", ["-f", "-10m"],
            "backup", volume, $"s3://{bucket}", "--compression", "bz2", "--object-size", "1048576", "--workers", "1", "--no-snapshot");
        var stderr = skewed.StandardError.ReadToEndAsync();
        var stdout = skewed.StandardOutput.ReadToEndAsync();
        var worker = WorkerOf(skewed.Id);
        try
        {
            // Stopped once it has stored an object of its own (or finished, should it be that quick).
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (!skewed.HasExited && !store.ListAsync($"volume_{full.VolumeId:D}/").ToBlockingEnumerable().Any(o => !o.Name.StartsWith(full.Prefix, StringComparison.Ordinal)))
            {
                Assert.True(clock.Elapsed < Patience, "the skewed backup stored an object");
                Thread.Sleep(20);
            }

            Signal(worker, "STOP");
            var log = new List<string>();
            var second = BackupOperation.Run(repository, new BackupRequest
            {
                SourcePath = volume, Incremental = true, ObjectSize = 1 << 20, UseSnapshot = false, Log = log.Add,
            });
            Assert.NotEqual(full.Id, second.Backup.Id);
        }
        finally
        {
            Signal(worker, "CONT");
        }

        Assert.True(skewed.WaitForExit(Patience), "the skewed backup ended");
        var error = stderr.GetAwaiter().GetResult();
        output.WriteLine($"skewed backup: exit {skewed.ExitCode}; {error.Trim()}");
        Assert.True(skewed.ExitCode == 0 || error.Contains("error VolumeLockLost:", StringComparison.Ordinal),
            $"the skewed backup completed or failed with VolumeLockLost: exit {skewed.ExitCode}, {stdout.GetAwaiter().GetResult()} {error}");

        foreach (var backup in repository.List())
        {
            var target = _scratch.PathOf($"restore-{backup.Id:N}.img");
            RestoreOperation.Run(repository, new RestoreRequest { BackupId = backup.Id, TargetPath = target });
            Assert.Equal(Scratch.Sha(volume), Scratch.Sha(target));
            Assert.True(repository.Verify(backup.Id, includeChain: true).IsValid, $"backup {backup.Id} verifies");
        }
    }

    /// <summary>faketime runs the command as its child: that process (dotnet with bbk) is the one to stop.</summary>
    private static int WorkerOf(int faketime)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            var children = File.ReadAllText($"/proc/{faketime}/task/{faketime}/children").Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (children.Length > 0)
            {
                return int.Parse(children[0], System.Globalization.CultureInfo.InvariantCulture);
            }

            Assert.True(clock.Elapsed < Patience, "faketime started its command");
            Thread.Sleep(10);
        }
    }

    private static void Signal(int pid, string signal)
    {
        using var kill = System.Diagnostics.Process.Start("kill", ["-" + signal, pid.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        kill.WaitForExit();
    }
}
