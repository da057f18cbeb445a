using BlockBackup.Engine.Operations;
using BlockBackup.Engine.Repository;
using Xunit;
using Xunit.Abstractions;

namespace BlockBackup.Engine.Tests;

/// <summary>
/// The crash-and-fault suite of the file repository (issue #11): bbk is killed with SIGKILL at
/// seeded random moments and at chosen system calls (strace inject=…:signal=SIGKILL) during full
/// and incremental backups, restores, removals and cleanups. After every kill the earlier backups
/// restore byte-identically, nothing half-made lists as available, the next backup of the volume
/// takes the dead holder's lock at once, and cleanup leaves exactly what was there before. Sized
/// for CI: fixed seeds, bounded iterations, small volumes.
/// </summary>
[Collection(CrashCollection.Name)]
public class CrashSuiteTests(ITestOutputHelper output)
{
    // What the kill points recognise, in strace's -y notation (paths, fd paths after '<').
    private const string LockFile = @"locks/[^""<>]*\.lock";
    internal const string LockName = @"locks/volume-[0-9a-f-]{36}\.lock""";
    internal const string Created = @""", [^)]*O_CREAT";
    internal const string ObjectTemp = @"/\.tmp-[0-9a-f]{32}";
    internal const string Container = @"/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
    internal const string Metadata = @"_metadata""";
    internal const string Sha256File = @"_sha256file""";
    internal const string Record = @"/blockbackup\.json""";
    private static readonly string[] Publish = KillPoint.Publish;

    /// <summary>Every phase of a full backup, from taking the lock to releasing it.</summary>
    internal static readonly KillPoint[] FullBackupPoints =
    [
        KillPoint.At("lock.create", "lock", false, "openat", LockFile + Created),
        KillPoint.At("lock.fill", "lock", false, "pwrite64", LockFile + ">"),
        KillPoint.At("lock.publish", "lock", false, Publish, LockName),
        KillPoint.At("begin.record", "in-flight record", false, "openat", @"blockbackup\.json" + Created),
        KillPoint.At("begin.record-publish", "in-flight record", false, Publish, Record),
        // Not by openat: the in-use check before it opens one directory per process on the machine.
        KillPoint.At("objects.first-data", "objects", false, "pwrite64", ObjectTemp + ">"),
        KillPoint.At("objects.middle-publish", "objects", false, Publish, @"-00008"""),
        KillPoint.At("commit.flush", "flush objects", false, "syncfs", ""),
        KillPoint.Before("sha256file.fsync", "sha256file", false, ["fsync"], ObjectTemp + ">", Publish, Sha256File),
        KillPoint.At("sha256file.publish", "sha256file", false, Publish, Sha256File),
        KillPoint.Before("metadata.fsync", "metadata", false, ["fsync"], ObjectTemp + ">", Publish, Metadata),
        KillPoint.At("metadata.publish", "metadata commit", false, Publish, Metadata),
        KillPoint.After("metadata.dirsync", "metadata commit", true, ["fsync"], Container + ">", Publish, Metadata),
        KillPoint.After("cache.publish", "listing cache", true, Publish, Record, Publish, Metadata),
        KillPoint.At("lock.release", "lock", true, "unlink", LockName),
    ];

    private static readonly KillPoint[] IncrementalPoints =
    [
        KillPoint.OnFile("incr.parent-hashes", "parent's hash list", false, "openat", ParentHashList),
        KillPoint.At("incr.objects.first-publish", "objects", false, Publish, @"-00001"""),
        KillPoint.At("incr.metadata.publish", "metadata commit", false, Publish, Metadata),
        KillPoint.After("incr.cache.publish", "listing cache", true, Publish, Record, Publish, Metadata),
    ];

    private const string RestoreTemp = @"restored\.img\.blockbackup-restore-[0-9a-f]{32}";
    private const string ReadLease = @"readers/volume-[^/""]*/";

    /// <summary>A restore to a new file: written under a temporary name, renamed into place (true: the target must then be complete).</summary>
    private static readonly KillPoint[] NewTargetPoints =
    [
        KillPoint.At("lease.publish", "read lease", false, Publish, ReadLease),
        KillPoint.At("target.create", "target", false, "openat", RestoreTemp + Created),
        KillPoint.At("target.data", "target", false, "pwrite64", RestoreTemp + ">", occurrence: 3),
        KillPoint.At("target.fsync", "target", false, "fsync", RestoreTemp + ">"),
        KillPoint.At("target.publish", "target commit", false, Publish, RestoreTemp),
        KillPoint.After("lease.release", "read lease", true, ["unlink"], ReadLease + @"[^./][^""]*""", Publish, RestoreTemp),
    ];

    /// <summary>A restore over an existing file (-Force): written in place, partial until it ends.</summary>
    private static readonly KillPoint[] InPlacePoints =
    [
        KillPoint.At("in-place.data", "target", null, "pwrite64", @"inplace\.img>", occurrence: 2),
        KillPoint.At("in-place.zeros", "target", null, "fallocate", @"inplace\.img>"),
        KillPoint.At("in-place.fsync", "target", null, "fsync", @"inplace\.img>"),
    ];

    /// <summary>Removing a backup without dependents (true: it must be gone, false: it must still restore).</summary>
    private static readonly KillPoint[] RemovePoints =
    [
        KillPoint.At("remove.lock", "lock", false, "openat", LockFile + Created),
        KillPoint.At("remove.metadata", "metadata", false, "unlink", Metadata),
        KillPoint.At("remove.object", "objects", null, "unlink", @"-00003"""),
        KillPoint.At("remove.record", "listing cache", null, "unlink", Record),
        KillPoint.At("remove.container", "container", null, "rmdir", Container + @""""),
        KillPoint.At("remove.lock-release", "lock", true, "unlink", LockName),
    ];

    /// <summary>Remove-VolumeBackup -Incomplete on a killed backup's leftover (whose dead holder's lock it takes over).</summary>
    private static readonly KillPoint[] CleanupPoints =
    [
        KillPoint.At("cleanup.lock-aside-unlink", "lock", null, "unlink", @"\.lock\.stale-"),
        KillPoint.At("cleanup.object", "objects", null, "unlink", @"-00002"""),
        KillPoint.At("cleanup.container", "container", null, "rmdir", Container + @""""),
    ];

    /// <summary>The hash list of volume A's latest backup: what an incremental reads first.</summary>
    private static string ParentHashList(CrashLab lab)
    {
        var parent = lab.S.Repository.FindLatest(Volumes.VolumeIdentity.ForPath(lab.VolumeA))!;
        return Path.Combine(lab.S.RepoPath, parent.Container, parent.Prefix + "_sha256file");
    }

    [Fact]
    public void RandomKillsDuringBackupRestoreRemoveAndCleanupHarmNothing()
    {
        using var lab = new CrashLab(output, 16 << 20, seed: 1101);
        var (_, latest) = MakeEarlierBackups(lab);
        var repo = lab.S.RepoPath;
        var withLeftover = 0;
        // Start-up (runtime, listing) takes this long here; after an anchor only the work is left.
        var startup = lab.TimeOnCopy((r, _) => ["list", r]);

        // Full backups: killed some time after the start, or after their first object appeared.
        var full = lab.TimeOnCopy((r, _) => CrashLab.BackupArgs(lab.VolumeA, r, false, "bz2", oneWorker: false));
        for (var i = 0; i < 4; i++)
        {
            var fromFirstObject = i % 2 == 0;
            var sha = Scratch.Sha(lab.VolumeA);
            lab.RunAndKill(CrashLab.BackupArgs(lab.VolumeA, repo, false, "bz2", oneWorker: false),
                fromFirstObject ? Between(lab, TimeSpan.Zero, full - startup) : Between(lab, startup / 2, full), fromFirstObject ? lab.NewObjectAppeared : null);
            AfterBackupKill(lab, sha, "random", null, ref withLeftover, startup);
        }

        // Incrementals over a volume that changed since its latest backup.
        Scratch.Scribble(lab.VolumeA, 2, writes: 60);
        var incremental = lab.TimeOnCopy((r, _) => CrashLab.BackupArgs(lab.VolumeA, r, true, "bz2", oneWorker: false));
        for (var i = 0; i < 4; i++)
        {
            Scratch.Scribble(lab.VolumeA, 10 + i, writes: 8);
            var fromFirstObject = i % 2 == 1;
            var sha = Scratch.Sha(lab.VolumeA);
            lab.RunAndKill(CrashLab.BackupArgs(lab.VolumeA, repo, true, "bz2", oneWorker: false),
                fromFirstObject ? Between(lab, TimeSpan.Zero, incremental - startup) : Between(lab, startup / 2, incremental), fromFirstObject ? lab.NewObjectAppeared : null);
            AfterBackupKill(lab, sha, "random", null, ref withLeftover, startup);
        }

        // Restores of the incremental chain, to a new file (killed after its temporary appeared) and over an existing one.
        var restore = lab.TimeOnCopy((r, t) => ["restore", r, latest.ToString(), t]);
        for (var i = 0; i < 4; i++)
        {
            var inPlace = i % 2 == 1;
            var target = inPlace ? Garbage(lab, "inplace.img", 16 << 20, i) : lab.S.PathOf("restored.img");
            string[] args = ["restore", repo, latest.ToString(), target, .. inPlace ? new[] { "--force" } : []];
            lab.RunAndKill(args, inPlace ? Between(lab, startup / 2, restore) : Between(lab, TimeSpan.Zero, restore - startup), inPlace ? null : () => Temporaries(target).Length > 0);
            AfterRestoreKill(lab, latest, target, inPlace, null);
        }

        // Removals of a backup without dependents (many objects): killed after the start, or once its metadata is gone.
        for (var i = 0; i < 3; i++)
        {
            var (target, sha) = lab.RemovalTarget(objectSize: 64 << 10);
            var metadata = lab.S.Repository.MetadataPath(lab.S.Repository.Get(target));
            lab.RunAndKill(["delete", repo, target.ToString()], i == 0 ? Between(lab, startup / 2, startup * 1.3) : Between(lab, TimeSpan.Zero, TimeSpan.FromMilliseconds(5)),
                i == 0 ? null : () => !File.Exists(metadata));
            AfterRemoveKill(lab, target, sha, null);
        }

        lab.PrintTally("random-kills");
        // Fails rather than passes quietly when the kills met no running process.
        Assert.True(lab.Tally["kills.delivered"] * 2 >= lab.Tally["kills.random.attempted"], $"only {lab.Tally["kills.delivered"]} of {lab.Tally["kills.random.attempted"]} kills met a running process");
        Assert.True(lab.Tally["kills.backup.before-commit"] > 0, "no random kill landed in a backup before its commit");
    }

    [SystemFact(needsRoot: false, "strace")]
    public void KillsAtChosenSystemCallsDuringBackupsHarmNothing()
    {
        using var lab = new CrashLab(output, 4 << 20, seed: 2202);
        MakeEarlierBackups(lab);
        var repo = lab.S.RepoPath;
        var withLeftover = 0;

        var probe = lab.Probe((r, _) => CrashLab.BackupArgs(lab.VolumeA, r, false));
        foreach (var point in FullBackupPoints)
        {
            var sha = Scratch.Sha(lab.VolumeA);
            lab.KillAt(point, probe, CrashLab.BackupArgs(lab.VolumeA, repo, false));
            AfterBackupKill(lab, sha, point.Name, point.Commits, ref withLeftover, null);
        }

        Scratch.Scribble(lab.VolumeA, 3, writes: 30);
        probe = lab.Probe((r, _) => CrashLab.BackupArgs(lab.VolumeA, r, true));
        foreach (var point in IncrementalPoints)
        {
            var sha = Scratch.Sha(lab.VolumeA);
            lab.KillAt(point, probe, CrashLab.BackupArgs(lab.VolumeA, repo, true));
            AfterBackupKill(lab, sha, point.Name, point.Commits, ref withLeftover, null);
        }

        lab.PrintTally("syscall-kills/backup");
        Assert.Equal(FullBackupPoints.Length + IncrementalPoints.Length, lab.Tally["injections.on-target"]);
    }

    [SystemFact(needsRoot: false, "strace")]
    public void KillsAtChosenSystemCallsDuringRestoreRemoveAndCleanupHarmNothing()
    {
        using var lab = new CrashLab(output, 4 << 20, seed: 3303);
        var (_, latest) = MakeEarlierBackups(lab);
        var repo = lab.S.RepoPath;

        var target = lab.S.PathOf("restored.img");
        string[] RestoreArgs(string r, string t, bool force) => ["restore", r, latest.ToString(), t, "--workers", "1", .. force ? new[] { "--force" } : []];
        var probe = lab.Probe((r, t) => RestoreArgs(r, t, false), target);
        foreach (var point in NewTargetPoints)
        {
            lab.KillAt(point, probe, RestoreArgs(repo, target, false));
            AfterRestoreKill(lab, latest, target, inPlace: false, point.Commits);
        }

        var existing = Garbage(lab, "inplace.img", 4 << 20, 0);
        probe = lab.Probe((r, t) => RestoreArgs(r, t, true), existing);
        foreach (var point in InPlacePoints)
        {
            Garbage(lab, "inplace.img", 4 << 20, 0);
            lab.KillAt(point, probe, RestoreArgs(repo, existing, true));
            AfterRestoreKill(lab, latest, existing, inPlace: true, point.Commits);
        }

        foreach (var point in RemovePoints)
        {
            var (removed, sha) = lab.RemovalTarget();
            probe = lab.Probe((r, _) => ["delete", r, removed.ToString()]);
            lab.KillAt(point, probe, ["delete", repo, removed.ToString()]);
            AfterRemoveKill(lab, removed, sha, point.Commits);
        }

        // Each cleanup gets a leftover of its own: a backup killed in the middle of its objects.
        var backupProbe = lab.Probe((r, _) => CrashLab.BackupArgs(lab.VolumeA, r, false));
        var middle = FullBackupPoints.Single(p => p.Name == "objects.middle-publish");
        foreach (var point in CleanupPoints)
        {
            lab.KillAt(middle, backupProbe, CrashLab.BackupArgs(lab.VolumeA, repo, false));
            var (leftovers, committed) = lab.CheckRepository(Scratch.Sha(lab.VolumeA));
            Assert.Null(committed);
            Assert.Single(leftovers);
            probe = lab.Probe((r, _) => ["cleanup", r]);
            lab.KillAt(point, probe, ["cleanup", repo]);
            AfterCleanupKill(lab, leftovers);
        }

        lab.PrintTally("syscall-kills/restore-remove-cleanup");
        Assert.Equal(NewTargetPoints.Length + InPlacePoints.Length + RemovePoints.Length + 2 * CleanupPoints.Length, lab.Tally["injections.on-target"]);
    }

    /// <summary>A full and an incremental backup of volume A and a full one of volume B, then the baseline. Returns A's two.</summary>
    private static (Guid Full, Guid Incremental) MakeEarlierBackups(CrashLab lab)
    {
        var full = lab.AddBackup(lab.VolumeA);
        Scratch.Scribble(lab.VolumeA, 1);
        var incremental = lab.AddBackup(lab.VolumeA, incremental: true);
        lab.AddBackup(lab.VolumeB);
        lab.TakeBaseline();
        return (full, incremental);
    }

    /// <summary>A seeded moment in [from, to).</summary>
    private static TimeSpan Between(CrashLab lab, TimeSpan from, TimeSpan to) =>
        from + TimeSpan.FromMilliseconds(lab.Random.NextDouble() * Math.Max(0, (to - from).TotalMilliseconds));

    /// <summary>
    /// After a killed backup: the repository checks, where the kill landed, then one of the ways
    /// to clean up (in turn: Remove-VolumeBackup -Incomplete, the next backup's own leftover
    /// removal, and, given <paramref name="killCleanupWithin"/> (the start-up time), a cleanup
    /// killed around the end of its start-up).
    /// </summary>
    private static void AfterBackupKill(CrashLab lab, string source, string point, bool? commits, ref int withLeftover, TimeSpan? killCleanupWithin)
    {
        var (leftovers, committed) = lab.CheckRepository(source);
        lab.CountCommit("kills.backup", committed, commits, point);
        var how = CrashLab.Cleanup.NextBackup;
        if (leftovers.Count > 0 && committed is null)
        {
            var turn = withLeftover++ % (killCleanupWithin is null ? 2 : 3);
            if (turn == 2)
            {
                lab.RunAndKill(["cleanup", lab.S.RepoPath], Between(lab, killCleanupWithin!.Value / 2, killCleanupWithin.Value * 1.3));
                AfterCleanupKill(lab, leftovers);
                return;
            }

            how = turn == 0 ? CrashLab.Cleanup.RemoveIncomplete : CrashLab.Cleanup.NextBackup;
        }

        lab.CleanUpAndBackUpAgain(leftovers, how, committed);
    }

    /// <summary>After a killed cleanup: what it did not remove is still an incomplete backup, and a rerun removes exactly that.</summary>
    private static void AfterCleanupKill(CrashLab lab, List<BackupInfo> leftovers)
    {
        var (remaining, committed) = lab.CheckRepository(null);
        Assert.Null(committed);
        Assert.All(remaining, r => Assert.Contains(leftovers, l => l.Id == r.Id));
        lab.Tally.Add("leftovers.cleaned.by-killed-cleanup", leftovers.Count - remaining.Count);
        var rerun = lab.S.Repository.RemoveIncomplete(TimeSpan.Zero);
        Assert.Equal(remaining.Select(b => b.Id).Order(), rerun.Select(b => b.Id).Order());
        lab.Tally.Add("leftovers.cleaned.by-cleanup-rerun", rerun.Count);
        lab.CleanUpAndBackUpAgain([], CrashLab.Cleanup.NextBackup);
    }

    /// <summary>
    /// After a killed restore: the repository is untouched; a new target exists only complete
    /// (<paramref name="complete"/>: whether it must by then); a rerun with -Force gives the
    /// backup's bytes exactly.
    /// </summary>
    private static void AfterRestoreKill(CrashLab lab, Guid backup, string target, bool inPlace, bool? complete)
    {
        var (leftovers, committed) = lab.CheckRepository(null);
        Assert.Empty(leftovers);
        Assert.Null(committed);
        var expected = lab.Expected[backup];
        if (!inPlace)
        {
            if (File.Exists(target))
            {
                Assert.Equal(expected, Scratch.Sha(target));
                lab.Tally.Add("restores.new-target-complete-at-kill");
            }
            else
            {
                lab.Tally.Add("restores.new-target-absent-at-kill");
            }

            if (complete is { } c)
            {
                Assert.Equal(c, File.Exists(target));
            }
        }

        var temporaries = Temporaries(target);
        lab.Tally.Add("restores.temporaries-beside-target-at-kill", temporaries.Length);
        RestoreOperation.Run(lab.S.Repository, new RestoreRequest { BackupId = backup, TargetPath = target, Overwrite = true });
        Assert.Equal(expected, Scratch.Sha(target));
        lab.Tally.Add("restores.rerun-with-force-identical");
        // The rerun removed what the killed restore left beside the target, and nothing else there.
        Assert.Empty(Temporaries(target));
        lab.Tally.Add("restores.temporaries-removed-by-rerun", temporaries.Length);
        File.Delete(target);
        lab.CleanUpAndBackUpAgain([], CrashLab.Cleanup.NextBackup);
    }

    /// <summary>
    /// After a killed removal: the other backups are untouched and the target is either gone
    /// entirely, still available and restorable, or incomplete/damaged, when a rerun of the
    /// removal finishes it. <paramref name="removed"/>: which of these the kill point must give.
    /// </summary>
    private static void AfterRemoveKill(CrashLab lab, Guid target, string sha, bool? removed)
    {
        var (leftovers, committed) = lab.CheckRepository(null, except: target);
        Assert.Empty(leftovers);
        Assert.Null(committed);
        var listed = lab.S.Repository.List(includeIncomplete: true).SingleOrDefault(b => b.Id == target);
        if (removed is { } r)
        {
            Assert.True(r == (listed is null), $"after the kill the removed backup is {(listed is null ? "gone" : listed.Status.ToString())}");
        }

        if (listed is null)
        {
            lab.Tally.Add("removes.gone-at-kill");
        }
        else if (listed.Status == BackupStatus.Available)
        {
            Assert.Equal(sha, lab.RestoredSha(target));
            lab.Tally.Add("removes.still-restorable-at-kill");
            lab.S.Repository.Remove(target, includeDependents: false);
        }
        else
        {
            Assert.True(listed.Status is BackupStatus.Incomplete or BackupStatus.Damaged, $"a half-removed backup is {listed.Status}");
            lab.Tally.Add($"removes.{listed.Status.ToString().ToLowerInvariant()}-at-kill");
            Assert.Equal([target], lab.S.Repository.Remove(target, includeDependents: false).Select(b => b.Id));
            lab.Tally.Add("removes.finished-by-rerun");
        }

        Assert.DoesNotContain(lab.S.Repository.List(includeIncomplete: true), b => b.Id == target);
        lab.CleanUpAndBackUpAgain([], CrashLab.Cleanup.NextBackup);
    }

    /// <summary>The restore's temporaries beside a target (a hidden name saying what it is).</summary>
    private static string[] Temporaries(string target) =>
        Directory.GetFiles(Path.GetDirectoryName(target)!, $".{Path.GetFileName(target)}.blockbackup-restore-*");

    /// <summary>An existing file full of other bytes, for a restore over it.</summary>
    private static string Garbage(CrashLab lab, string name, int size, int seed)
    {
        var bytes = new byte[size];
        new Random(seed).NextBytes(bytes);
        var path = lab.S.PathOf(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }
}
