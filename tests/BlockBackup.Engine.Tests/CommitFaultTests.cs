using BlockBackup.Engine.Errors;
using BlockBackup.Engine.ObjectStores;
using BlockBackup.Engine.Operations;
using BlockBackup.Engine.Repository;
using Xunit;
using Xunit.Abstractions;
using static BlockBackup.Engine.Tests.CrashSuiteTests;

namespace BlockBackup.Engine.Tests;

/// <summary>
/// "A failure at commit never deletes a backup that already existed" (issue #11, item 5): every
/// step of the commit is made to fail (strace inject=…:error=…) and, in this process, a commit
/// meets a backup already in place. Before the metadata is in place the failure is a clear error
/// naming the file and the new backup's files are gone; from then on the backup stays, whatever
/// fails after. Earlier backups are never touched.
/// </summary>
[Collection(CrashCollection.Name)]
public class CommitFaultTests(ITestOutputHelper output)
{
    private static readonly string[] Publish = KillPoint.Publish;

    /// <summary>A commit step, the error it is made to fail with, and whether the backup must exist afterwards.</summary>
    private sealed record Fault(KillPoint Point, string Errno, string? ErrorId, bool Commits);

    private static readonly Fault[] Faults =
    [
        new(KillPoint.At("commit.flush", "flush objects", false, "syncfs", ""), "ENOSPC", "DiskFull", false),
        new(KillPoint.Before("sha256file.fsync", "sha256file", false, ["fsync"], ObjectTemp + ">", Publish, Sha256File), "EIO", "WriteFailed", false),
        new(KillPoint.Before("metadata.write", "metadata", false, ["pwrite64"], ObjectTemp + ">", Publish, Metadata), "ENOSPC", "DiskFull", false),
        new(KillPoint.Before("metadata.fsync", "metadata", false, ["fsync"], ObjectTemp + ">", Publish, Metadata), "ENOSPC", "DiskFull", false),
        new(KillPoint.At("metadata.publish", "metadata commit", false, Publish, Metadata), "ENOSPC", "DiskFull", false),
        new(KillPoint.At("metadata.publish", "metadata commit", false, Publish, Metadata), "EEXIST", "ObjectExists", false),
        new(KillPoint.After("metadata.dirsync", "metadata commit", true, ["fsync"], Container + ">", Publish, Metadata), "EIO", null, true),
        new(KillPoint.After("record.delete", "in-flight record", true, ["unlink"], @"inflight/backup-[0-9a-f-]{36}\.json""", Publish, Metadata), "EIO", null, true),
        new(KillPoint.After("cache.publish", "listing cache", true, Publish, CrashSuiteTests.Record, Publish, Metadata), "ENOSPC", null, true),
        new(KillPoint.At("lock.release", "lock", true, "unlink", LockName), "EIO", null, true),
    ];

    [SystemFact(needsRoot: false, "strace")]
    public void EveryCommitStepFailingLeavesEarlierBackupsAndNeverDeletesACommittedOne()
    {
        using var lab = new CrashLab(output, 4 << 20, seed: 4404);
        lab.AddBackup(lab.VolumeA);
        lab.AddBackup(lab.VolumeB);
        lab.TakeBaseline();
        var args = CrashLab.BackupArgs(lab.VolumeA, lab.S.RepoPath, false);
        var probe = lab.Probe((r, _) => CrashLab.BackupArgs(lab.VolumeA, r, false));
        foreach (var fault in Faults)
        {
            var sha = Scratch.Sha(lab.VolumeA);
            var (code, said) = lab.FailAt(fault.Point, probe, args, fault.Errno);
            if (fault.ErrorId is { } id)
            {
                // A clear error with its stable id, naming where (bbk prints "error <id>: <message>").
                Assert.True(code == 2 && said.Contains($"error {id}:", StringComparison.Ordinal) && said.Contains(lab.S.RepoPath, StringComparison.Ordinal),
                    $"{fault.Errno} at {fault.Point.Name}: expected error {id} naming the repository's file, got exit {code}: {said}");
                lab.Tally.Add("faults.clear-error");
            }
            else
            {
                Assert.True(code == 0, $"{fault.Errno} at {fault.Point.Name}, after the commit, failed the backup (exit {code}): {said}");
                lab.Tally.Add("faults.after-commit-backup-kept");
            }

            var (leftovers, committed) = lab.CheckRepository(sha);
            lab.CountCommit("faults.backup", committed, fault.Commits, fault.Point.Name);
            Assert.Empty(leftovers); // a failed backup removed its own files, nothing else
            lab.CleanUpAndBackUpAgain(leftovers, CrashLab.Cleanup.NextBackup, committed);
        }

        // A restore to a new file whose data cannot be made durable is not put in place.
        var target = lab.S.PathOf("restored.img");
        var restored = lab.Expected.Keys.First();
        string[] RestoreArgs(string r, string t) => ["restore", r, restored.ToString(), t, "--workers", "1"];
        var restoreProbe = lab.Probe(RestoreArgs, target);
        var fsync = KillPoint.At("target.fsync", "target", false, "fsync", @"restored\.img\.blockbackup-restore-[0-9a-f]{32}>");
        var (restoreCode, restoreSaid) = lab.FailAt(fsync, restoreProbe, RestoreArgs(lab.S.RepoPath, target), "ENOSPC");
        Assert.True(restoreCode == 2 && restoreSaid.Contains("error DiskFull:", StringComparison.Ordinal) && restoreSaid.Contains(target, StringComparison.Ordinal),
            $"ENOSPC at the restore target's fsync: expected error DiskFull naming the target, got exit {restoreCode}: {restoreSaid}");
        Assert.False(File.Exists(target), "a restore whose data was not durable put its target in place");
        Assert.Empty(Directory.GetFiles(lab.S.Dir, ".restored.img.blockbackup-restore-*"));
        lab.Tally.Add("faults.clear-error");
        lab.CheckRepository(null);
        lab.CleanUpAndBackUpAgain([], CrashLab.Cleanup.NextBackup);

        lab.PrintTally("commit-faults");
        Assert.Equal(Faults.Length + 1, lab.Tally["injections.on-target"]);
    }

    [Fact]
    public void AFailureAfterTheCommitKeepsTheBackup()
    {
        using var s = new Scratch();
        var volume = s.MixedVolume("v.img", 2 << 20, 7);
        var earlier = s.Backup(volume).Backup;
        // A progress handler that throws once the backup is done (as a stopped pipeline does).
        var failing = new Failing(p => p.Phase == OperationPhase.Committing && p.Activity == "Done");
        var ex = Assert.Throws<InvalidOperationException>(() => BackupOperation.Run(s.Repository, new BackupRequest { SourcePath = volume, UseSnapshot = false }, failing));
        Assert.Equal("pipeline stopped", ex.Message);

        var kept = Assert.Single(s.Repository.List(), b => b.Id != earlier.Id);
        s.Restore(kept.Id, s.PathOf("kept.img"));
        Assert.Equal(Scratch.Sha(volume), Scratch.Sha(s.PathOf("kept.img")));
        Assert.True(VerifyOperation.Run(s.Repository, earlier.Id, includeChain: false).IsValid);
    }

    [Fact]
    public void AbandoningABackupWhoseMetadataIsInPlaceRemovesNothing() => LeavesTheExistingBackupAlone((s, existing) =>
        // What a commit that failed after its metadata landed (or met someone else's) abandons.
        s.Repository.AbandonBackup(new NewBackup(existing.Id, existing.VolumeId, existing.Container, existing.Prefix, existing.CreatedUtc)));

    [Fact]
    public void ANewBackupNeverWritesIntoOrCleansUpAContainerThatExists() => LeavesTheExistingBackupAlone((s, existing) =>
    {
        using var volumeLock = s.Repository.AcquireLock(existing.VolumeId, "backup", CancellationToken.None);
        var refused = Assert.Throws<BackupException>(() => s.Repository.BeginBackup(volumeLock, existing.VolumeId, existing.Id, existing.CreatedUtc));
        Assert.Equal("ContainerExists", refused.ErrorId);
        Assert.Contains(s.Repository.ContainerPath(existing), refused.Message, StringComparison.Ordinal);
        Assert.Empty(InFlightRecord.All(s.RepoPath));
    });

    [Fact]
    public void CreateOnlyMetadataIsNeverReplaced() => LeavesTheExistingBackupAlone((s, existing) =>
    {
        var key = s.Repository.ObjectKey(existing.Container, Format.ObjectNaming.MetadataName(existing.Prefix));
        var refused = Assert.Throws<BackupException>(() => s.Repository.Store.PutWrittenAsync(key, stream => stream.Write("{}"u8), new PutOptions(CreateOnly: true), CancellationToken.None).GetAwaiter().GetResult());
        Assert.Equal("ObjectExists", refused.ErrorId); // and no temporary is left beside it (the snapshot)
    });

    /// <summary>Makes a backup, runs <paramref name="act"/> on it, and proves its files are as they were and it still verifies.</summary>
    private static void LeavesTheExistingBackupAlone(Action<Scratch, BackupInfo> act)
    {
        using var s = new Scratch();
        var existing = s.Backup(s.MixedVolume("v.img", 2 << 20, 8)).Backup;
        var before = s.Snapshot();
        act(s, existing);
        Assert.Equal(before, s.Snapshot());
        Assert.True(VerifyOperation.Run(s.Repository, existing.Id, includeChain: false).IsValid);
    }

    private sealed class Failing(Func<OperationProgress, bool> when) : IProgress<OperationProgress>
    {
        public void Report(OperationProgress value)
        {
            if (when(value))
            {
                throw new InvalidOperationException("pipeline stopped");
            }
        }
    }
}
