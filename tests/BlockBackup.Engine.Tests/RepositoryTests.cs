using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Format;
using BlockBackup.Engine.Operations;
using BlockBackup.Engine.Repository;
using Xunit;

namespace BlockBackup.Engine.Tests;

public class RepositoryTests
{
    [Fact]
    public void DeleteIsRefusedWhileDependentsExistAndRemovesExactlyTheBackupsFiles()
    {
        using var s = new Scratch();
        var volume = s.MixedVolume("vol.img", 2 << 20, seed: 1);
        var other = s.MixedVolume("other.img", 1 << 20, seed: 2);
        var full = s.Backup(volume).Backup;
        Scratch.Scribble(volume, 1);
        var i1 = s.Backup(volume, incremental: true).Backup;
        Scratch.Scribble(volume, 2);
        var i2 = s.Backup(volume, incremental: true).Backup;
        var unrelated = s.Backup(other).Backup;

        var refused = Assert.Throws<BackupException>(() => s.Repository.Remove(full.Id, includeDependents: false));
        Assert.Equal("BackupHasDependents", refused.ErrorId);
        Assert.Contains(i1.Id.ToString(), refused.Message, StringComparison.Ordinal);
        Assert.Equal(4, s.Repository.List().Count);

        var before = s.Snapshot();
        var removed = s.Repository.Remove(i2.Id, includeDependents: false);
        Assert.Equal([i2.Id], removed.Select(b => b.Id));
        var after = s.Snapshot();
        Assert.All(after, kv => Assert.Equal(before[kv.Key], kv.Value));
        Assert.All(before.Keys.Except(after.Keys), k => Assert.StartsWith(i2.Container, k, StringComparison.Ordinal));
        Assert.False(Directory.Exists(s.Repository.ContainerPath(i2)));

        var cascade = s.Repository.Remove(full.Id, includeDependents: true);
        Assert.Equal([i1.Id, full.Id], cascade.Select(b => b.Id));
        Assert.Equal([unrelated.Id], s.Repository.List().Select(b => b.Id));
        var target = s.PathOf("out.img");
        s.Restore(unrelated.Id, target);
        Assert.Equal(Scratch.Sha(other), Scratch.Sha(target));
    }

    [Fact]
    public void AListingCacheThatLiesAboutAParentNeverLetsTheParentBeDeleted()
    {
        using var s = new Scratch();
        var volume = s.MixedVolume("vol.img", 2 << 20, seed: 3);
        var full = s.Backup(volume).Backup;
        Scratch.Scribble(volume, 4);
        var incremental = s.Backup(volume, incremental: true).Backup;
        Assert.Equal([full.Id, incremental.Id], s.Repository.List().Select(b => b.Id));   // the caches are written

        // One wrong GUID in the incremental's cache; the metadata's length and mtime still match, so listing trusts it.
        var cache = Path.Combine(s.Repository.ContainerPath(incremental), "blockbackup.json");
        File.WriteAllText(cache, File.ReadAllText(cache).Replace(full.Id.ToString(), Guid.NewGuid().ToString(), StringComparison.Ordinal));
        Assert.NotEqual(full.Id, s.Repository.List().Single(b => b.Id == incremental.Id).ParentId);

        var refused = Assert.Throws<BackupException>(() => s.Repository.Remove(full.Id, includeDependents: false));
        Assert.Equal("BackupHasDependents", refused.ErrorId);
        Assert.Contains(incremental.Id.ToString(), refused.Message, StringComparison.Ordinal);
        // The cache that disagreed with the metadata was dropped: the listing is right again.
        Assert.Equal(full.Id, s.Repository.List().Single(b => b.Id == incremental.Id).ParentId);
        var target = s.PathOf("restored.img");
        s.Restore(incremental.Id, target);
        Assert.Equal(Scratch.Sha(volume), Scratch.Sha(target));
    }

    [Fact]
    public void SymbolicLinksInTheRepositoryAreNeverFollowed()
    {
        if (OperatingSystem.IsWindows())
        {
            return; // symbolic links need a privilege there; the rule is the same
        }

        using var s = new Scratch();
        var volume = s.MixedVolume("vol.img", 1 << 20, seed: 5);
        var full = s.Backup(volume).Backup;

        // Outside the repository: a directory that looks like a leftover container, and an unrelated file.
        var outside = Directory.CreateDirectory(s.PathOf("outside")).FullName;
        var leftoverId = Guid.NewGuid();
        var prefix = $"volume_{full.VolumeId}_20260101000000_backup_{leftoverId}";
        File.WriteAllText(Path.Combine(outside, prefix + "-00001"), "someone else's data");
        File.WriteAllText(Path.Combine(outside, ".tmp-keep"), "unrelated");
        var fanout = Directory.CreateDirectory(Path.Combine(s.RepoPath, leftoverId.ToString("D")[..2], leftoverId.ToString("D")[2..4])).FullName;
        var linked = Path.Combine(fanout, leftoverId.ToString("D"));
        Directory.CreateSymbolicLink(linked, outside);
        Directory.CreateSymbolicLink(Path.Combine(s.RepoPath, "loop"), s.RepoPath);   // a loop

        var listed = s.Repository.List(includeIncomplete: true);
        Assert.Single(listed, b => b.Id == full.Id);
        var damaged = Assert.Single(listed, b => b.Id == leftoverId);
        Assert.Equal(BackupStatus.Damaged, damaged.Status);
        Assert.Contains("symbolic link", damaged.Problem, StringComparison.Ordinal);

        Assert.Empty(s.Repository.RemoveIncomplete(Repository.IncompleteBackups.DefaultMinimumAge));
        Assert.Equal("ContainerIsSymbolicLink", Assert.Throws<BackupException>(() => s.Repository.Remove(leftoverId, includeDependents: false)).ErrorId);
        Assert.True(File.Exists(Path.Combine(outside, prefix + "-00001")));
        Assert.True(File.Exists(Path.Combine(outside, ".tmp-keep")));
        Assert.False(File.Exists(Path.Combine(outside, "blockbackup.json")));
        Assert.Equal(2, Directory.GetFileSystemEntries(outside).Length);
    }

    [Fact]
    public void AnEmptyOrHalfWrittenLockLeftByADeadWriterIsRecoveredInSeconds()
    {
        using var s = new Scratch();
        var volume = s.MixedVolume("vol.img", 1 << 20, seed: 6);
        var full = s.Backup(volume).Backup;
        foreach (var content in new[] { "", "{\"host\": \"vm\", \"pi" })
        {
            var lockPath = RepositoryLock.LockPath(s.RepoPath, full.VolumeId);
            File.WriteAllText(lockPath, content);
            File.SetLastWriteTimeUtc(lockPath, DateTime.UtcNow.AddSeconds(-10));   // its writer died seconds ago
            var clock = System.Diagnostics.Stopwatch.StartNew();
            using (RepositoryLock.Acquire(s.RepoPath, full.VolumeId, "test", TimeSpan.FromSeconds(30), CancellationToken.None))
            {
                Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"took {clock.Elapsed} for lock content '{content}'");
            }
        }
    }

    [Fact]
    public void ListingLatestAndChainComeFromTheRepositoryAlone()
    {
        using var s = new Scratch();
        var a = s.MixedVolume("a.img", 1 << 20, 1);
        var b = s.MixedVolume("b.img", 1 << 20, 2);
        var a1 = s.Backup(a, name: "a1").Backup;
        var b1 = s.Backup(b, name: "b1").Backup;
        var a2 = s.Backup(a, incremental: true, name: "a2").Backup;

        // A fresh repository object sees the same thing (no in-memory state).
        var again = BackupRepository.Open(s.RepoPath, create: false);
        Assert.Equal([a1.Id, b1.Id, a2.Id], again.List().Select(x => x.Id));
        Assert.Equal(a2.Id, again.FindLatest(a1.VolumeId)!.Id);
        Assert.Equal(b1.Id, again.FindLatest(b1.VolumeId)!.Id);
        Assert.Equal([a1.Id, a2.Id], again.GetChain(a2.Id).Backups.Select(x => x.Id));
        Assert.Equal("direct", a1.Consistency);
        Assert.Equal(1 << 20, a2.VolumeSize);
        Assert.NotEqual(a1.VolumeId, b1.VolumeId);
        Assert.Equal(a1.VolumeId, Volumes.VolumeIdentity.ForPath(a));
    }

    [Fact]
    public void ListingCacheIsRebuiltFromMetadataWhenItIsStaleOrMissing()
    {
        using var s = new Scratch();
        var b = s.Backup(s.MixedVolume("v.img", 1 << 20, 3), name: "original").Backup;
        var container = s.Repository.ContainerPath(b);
        var summary = Path.Combine(container, "blockbackup.json");
        File.WriteAllText(summary, File.ReadAllText(summary).Replace("\"original\"", "\"cached-lie\"", StringComparison.Ordinal));
        Assert.Equal("cached-lie", s.Repository.List().Single().Name); // trusted while the metadata is unchanged

        var metadata = s.Repository.MetadataPath(b);
        File.SetLastWriteTimeUtc(metadata, DateTime.UtcNow.AddMinutes(1));
        Assert.Equal("original", s.Repository.List().Single().Name); // metadata wins once it changed

        File.Delete(summary);
        Assert.Equal("original", s.Repository.List().Single().Name);
    }

    [Fact]
    public void ForeignBackupFilesInTheContainerAreNeverTouchedByDelete()
    {
        using var s = new Scratch();
        var b = s.Backup(s.MixedVolume("v.img", 1 << 20, 3)).Backup;
        var keep = Path.Combine(s.Repository.ContainerPath(b), "volume_11111111-1111-1111-1111-111111111111_20200101000000_backup_22222222-2222-2222-2222-222222222222-00001");
        File.WriteAllText(keep, "someone else's object");
        s.Repository.Remove(b.Id, false);
        Assert.True(File.Exists(keep));
    }

    [Fact]
    public void SecondBackupOfTheSameVolumeWaitsForTheLockAndChainsOnTheFirst()
    {
        using var s = new Scratch();
        var volume = s.MixedVolume("v.img", 8 << 20, 5);
        s.Backup(volume);
        var results = new BackupResult[2];
        Parallel.For(0, 2, i => results[i] = s.Backup(volume, incremental: true));
        var ids = results.Select(r => r.Backup.Id).ToHashSet();
        // Serialised by the lock: one incremental's parent is the other.
        Assert.Contains(results, r => ids.Contains(r.Backup.ParentId!.Value));
        foreach (var r in results)
        {
            Assert.True(VerifyOperation.Run(s.Repository, r.Backup.Id, includeChain: true).IsValid);
        }

        Assert.Equal(3, s.Repository.List().Count);
    }

    [Fact]
    public void HeldLockFailsFastWithTheHolderAndStaleLocksAreRecovered()
    {
        using var s = new Scratch();
        var volume = s.MixedVolume("v.img", 1 << 20, 6);
        var volumeId = Volumes.VolumeIdentity.ForPath(volume);
        s.Repository.LockTimeout = TimeSpan.Zero;
        using (RepositoryLock.Acquire(s.RepoPath, volumeId, "test holder", TimeSpan.Zero, default))
        {
            var busy = Assert.Throws<BackupException>(() => s.Backup(volume));
            Assert.Equal("RepositoryLocked", busy.ErrorId);
            Assert.Contains("test holder", busy.Message, StringComparison.Ordinal);
        }

        // A lock left by a dead process on this host is recovered at once.
        var path = RepositoryLock.LockPath(s.RepoPath, volumeId);
        File.WriteAllText(path, $$"""{"host":"{{Environment.MachineName}}","pid":{{int.MaxValue - 7}},"operation":"backup","token":"x"}""");
        Assert.NotNull(s.Backup(volume).Backup);

        // A lock from another host is honoured while its heartbeat is fresh, recovered once stale.
        File.WriteAllText(path, """{"host":"some-other-host","pid":1,"operation":"backup","token":"y"}""");
        Assert.Equal("RepositoryLocked", Assert.Throws<BackupException>(() => s.Backup(volume)).ErrorId);
        File.SetLastWriteTimeUtc(path, DateTime.UtcNow - RepositoryLock.StaleAfter - TimeSpan.FromMinutes(1));
        Assert.NotNull(s.Backup(volume).Backup);
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void CancellationLeavesNoBackupBehind()
    {
        using var s = new Scratch();
        var volume = s.MixedVolume("v.img", 16 << 20, 8);
        var first = s.Backup(volume).Backup;
        var before = s.Snapshot();
        using var cts = new CancellationTokenSource();
        var progress = new SyncProgress(p => { if (p.BytesDone > 0) cts.Cancel(); });
        Assert.ThrowsAny<OperationCanceledException>(() => BackupOperation.Run(s.Repository,
            new BackupRequest { SourcePath = volume, ObjectSize = 1 << 20, UseSnapshot = false, Workers = 1 }, progress, cts.Token));
        Assert.Equal([first.Id], s.Repository.List(includeIncomplete: true).Select(b => b.Id));
        Assert.Equal(before, s.Snapshot());
    }

    private sealed class SyncProgress(Action<OperationProgress> action) : IProgress<OperationProgress>
    {
        public void Report(OperationProgress value) => action(value);
    }
}
