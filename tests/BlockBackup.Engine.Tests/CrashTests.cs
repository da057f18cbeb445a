using System.Diagnostics;
using BlockBackup.Engine.Operations;
using Xunit;

namespace BlockBackup.Engine.Tests;

[Collection(CrashCollection.Name)]
public class CrashTests
{
    [Fact]
    public void KilledBackupLeavesOnlyARecognisableLeftoverAndHarmsNothing()
    {
        using var s = new Scratch();
        var volume = s.PathOf("v.img");
        var data = new byte[192 << 20];
        new Random(3).NextBytes(data); // incompressible: slow enough to be caught in the middle
        File.WriteAllBytes(volume, data);
        var small = s.MixedVolume("small.img", 2 << 20, 4);
        var earlier = s.Backup(small).Backup;
        var before = s.Snapshot();

        using var child = Bbk.Start("backup", volume, s.RepoPath, "--compression", "bz2", "--object-size", "1048576", "--no-snapshot");
        var clock = Stopwatch.StartNew();
        // An object's temporary in the container (not the lock's or the in-flight record's under .blockbackup/).
        while (!Directory.EnumerateFiles(s.RepoPath, ".tmp-*", SearchOption.AllDirectories)
            .Any(f => !f.Contains("blockbackup.json", StringComparison.Ordinal) && !f.Contains($"{Path.DirectorySeparatorChar}.blockbackup{Path.DirectorySeparatorChar}", StringComparison.Ordinal)))
        {
            if (child.HasExited)
            {
                Assert.Fail($"the backup ended (exit code {child.ExitCode}) before it could be killed: {child.StandardOutput.ReadToEnd()} {child.StandardError.ReadToEnd()}");
            }

            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), "the child never started writing objects");
            Thread.Sleep(5);
        }

        child.Kill(entireProcessTree: true);
        child.WaitForExit();

        // Nothing lists as available but the earlier backup, whose files are untouched.
        Assert.Equal([earlier.Id], s.Repository.List().Select(b => b.Id));
        Assert.All(before, kv => Assert.Equal(kv.Value, Scratch.Sha(Path.Combine(s.RepoPath, kv.Key))));
        var leftover = Assert.Single(s.Repository.List(includeIncomplete: true), b => b.Status == BackupStatus.Incomplete);
        Assert.Equal(Volumes.VolumeIdentity.ForPath(volume), leftover.VolumeId);
        Assert.True(VerifyOperation.Run(s.Repository, earlier.Id, includeChain: true).IsValid);

        // The dead child's lock is recovered; cleanup removes exactly the leftover.
        var removed = s.Repository.RemoveIncomplete(Repository.IncompleteBackups.DefaultMinimumAge);
        Assert.Equal([leftover.Id], removed.Select(b => b.Id));
        Assert.False(Directory.Exists(Path.Combine(s.RepoPath, leftover.Container)));
        Assert.Equal(before, s.Snapshot());

        var next = s.Backup(volume, objectSize: 8 << 20);
        s.Restore(next.Backup.Id, s.PathOf("out.img"));
        Assert.Equal(Scratch.Sha(volume), Scratch.Sha(s.PathOf("out.img")));
    }
}
