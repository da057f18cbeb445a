using System.Diagnostics;
using BlockBackup.Bench;
using BlockBackup.Engine.Compression;
using BlockBackup.Engine.Format;
using BlockBackup.Engine.Operations;
using BlockBackup.Engine.Repository;
using BlockBackup.Engine.Volumes;
using Xunit;

namespace BlockBackup.Engine.Tests;

public class BackupCancellationTests(Xunit.Abstractions.ITestOutputHelper output)
{
    [Fact]
    public void ABz2BackupOfRepetitiveTextStopsWithinSecondsOfCancellationAndLeavesNothing()
    {
        using var s = new Scratch();
        var volume = s.PathOf("text.img");
        var text = CodecInputs.RepetitiveText(8 << 20);
        using (var f = File.Create(volume))
        {
            for (var i = 0; i < 16; i++)
            {
                f.Write(text); // 128 MiB: bz2's slowest kind of data, sixteen 8 MiB objects
            }
        }

        using var cts = new CancellationTokenSource();
        var backup = Task.Run(() => BackupOperation.Run(s.Repository,
            new BackupRequest { SourcePath = volume, Compression = CompressionAlgorithm.Bz2, UseSnapshot = false }, null, cts.Token));

        // The container's marker is written just before the data phase; half a second later the
        // workers are inside their first objects (reading 8 MiB takes milliseconds, bz2 seconds).
        var waited = Stopwatch.StartNew();
        while (!Directory.EnumerateFiles(s.RepoPath, ContainerSummary.FileName, SearchOption.AllDirectories).Any())
        {
            Assert.False(backup.IsCompleted, "the backup ended before it wrote anything");
            Assert.True(waited.Elapsed < TimeSpan.FromSeconds(60), "the backup never started");
            Thread.Sleep(10);
        }

        Thread.Sleep(500);
        Assert.False(backup.IsCompleted, "the backup finished before it could be cancelled");
        var sinceCancel = Stopwatch.StartNew();
        cts.Cancel();
        Assert.ThrowsAny<OperationCanceledException>(() => backup.GetAwaiter().GetResult());
        output.WriteLine($"stopped {sinceCancel.Elapsed.TotalSeconds:F2} s after cancellation");
        // Before libbz2 and per-slice checks a stop waited for whole objects: 20-37 s.
        Assert.True(sinceCancel.Elapsed < TimeSpan.FromSeconds(5), $"the backup stopped {sinceCancel.Elapsed.TotalSeconds:F1} s after cancellation");

        Assert.Empty(s.Repository.List(includeIncomplete: true));
        Assert.Empty(s.Snapshot());
        Assert.False(File.Exists(RepositoryLock.LockPath(s.RepoPath, VolumeIdentity.ForPath(volume))));
    }
}

public class LeftoverCleanupTests
{
    [Fact]
    public void TheNextBackupOfAVolumeRemovesItsKilledBackupsLeftoverAndNothingElse()
    {
        using var s = new Scratch();
        var volume = s.PathOf("v.img");
        var data = new byte[128 << 20];
        new Random(11).NextBytes(data); // incompressible: written raw, slow enough to be caught midway
        File.WriteAllBytes(volume, data);
        var volumeId = VolumeIdentity.ForPath(volume);
        var other = s.MixedVolume("other.img", 2 << 20, 12);

        // Earlier backups of the same volume that are not leftovers: one available, one damaged.
        var available = s.Backup(volume, objectSize: 8 << 20).Backup;
        var damaged = s.Backup(volume, objectSize: 8 << 20).Backup;
        File.WriteAllText(s.Repository.ContainerPath(damaged) + "/" + ObjectNaming.MetadataName(damaged.Prefix), "{ not metadata");
        // An interrupted Cinder backup of the same volume: Cinder takes no BlockBackup lock, so it
        // may be running right now; only the explicit cleanup may remove it.
        var cinderId = Guid.NewGuid();
        var cinderContainer = Path.Combine(s.RepoPath, ObjectNaming.DefaultContainer(cinderId));
        Directory.CreateDirectory(cinderContainer);
        File.WriteAllBytes(Path.Combine(cinderContainer, ObjectNaming.ObjectName(ObjectNaming.Prefix(volumeId, DateTime.UtcNow, cinderId), 1)), [1, 2, 3]);

        var leftover = KilledBackup(s, volume);
        Assert.Equal(volumeId, leftover.VolumeId);
        var before = s.Snapshot();
        var leftoverFiles = before.Keys.Where(k => k.StartsWith(leftover.Container + Path.DirectorySeparatorChar, StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(leftoverFiles);

        // A backup of another volume leaves it alone.
        var log = new List<string>();
        var unrelated = BackupOperation.Run(s.Repository, new BackupRequest { SourcePath = other, UseSnapshot = false, Log = log.Add }).Backup;
        Assert.Empty(log);
        Assert.Contains(s.Repository.List(includeIncomplete: true), b => b.Id == leftover.Id && b.Status == BackupStatus.Incomplete);
        Assert.All(before, kv => Assert.Equal(kv.Value, Scratch.Sha(Path.Combine(s.RepoPath, kv.Key))));

        // The next backup of the volume removes exactly the leftover, and says so.
        var next = BackupOperation.Run(s.Repository, new BackupRequest { SourcePath = volume, ObjectSize = 8 << 20, UseSnapshot = false, Log = log.Add }).Backup;
        var message = Assert.Single(log);
        Assert.Contains(leftover.Id.ToString(), message, StringComparison.Ordinal);
        Assert.StartsWith("Removed the leftover of interrupted backup", message, StringComparison.Ordinal);
        Assert.False(Directory.Exists(Path.Combine(s.RepoPath, leftover.Container)));
        var after = s.Snapshot();
        Assert.All(before.Where(kv => !leftoverFiles.Contains(kv.Key)), kv => Assert.Equal(kv.Value, after[kv.Key]));

        var listed = s.Repository.List(includeIncomplete: true);
        Assert.Equal(
            new[] { (available.Id, BackupStatus.Available), (damaged.Id, BackupStatus.Damaged), (cinderId, BackupStatus.Incomplete), (unrelated.Id, BackupStatus.Available), (next.Id, BackupStatus.Available) }.OrderBy(x => x.Item1),
            listed.Select(b => (b.Id, b.Status)).OrderBy(x => x.Item1));
        s.Restore(next.Id, s.PathOf("out.img"));
        Assert.Equal(Scratch.Sha(volume), Scratch.Sha(s.PathOf("out.img")));
    }

    /// <summary>Starts a bbk backup of <paramref name="volume"/>, kills it once it has written an object, and returns its leftover.</summary>
    private static BackupInfo KilledBackup(Scratch s, string volume)
    {
        var earlier = s.Repository.List(includeIncomplete: true).Select(b => b.Id).ToHashSet();
        using var child = Bbk.Start("backup", volume, s.RepoPath, "--compression", "bz2", "--object-size", "1048576", "--no-snapshot");
        var clock = Stopwatch.StartNew();
        // An object being written in the backup's container (the lock and the in-flight record
        // under .blockbackup/ have temporaries of their own, written before any object).
        var ownArea = Path.DirectorySeparatorChar + ".blockbackup" + Path.DirectorySeparatorChar;
        while (!Directory.EnumerateFiles(s.RepoPath, ".tmp-*", SearchOption.AllDirectories)
                   .Any(f => !f.Contains(ContainerSummary.FileName, StringComparison.Ordinal) && !f.Contains(ownArea, StringComparison.Ordinal)))
        {
            Assert.False(child.HasExited, "the backup ended before it could be killed");
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), "the child never started writing objects");
            Thread.Sleep(5);
        }

        child.Kill(entireProcessTree: true);
        child.WaitForExit();
        return Assert.Single(s.Repository.List(includeIncomplete: true), b => !earlier.Contains(b.Id) && b.Status == BackupStatus.Incomplete);
    }
}
