using System.Diagnostics;
using BlockBackup.Engine.Consistency;
using BlockBackup.Engine.Operations;
using BlockBackup.Engine.Repository;
using Xunit;
using Xunit.Abstractions;

namespace BlockBackup.Engine.Tests;

/// <summary>
/// Reflink clones beside the user's image (issue #11, item 5), on a real XFS loop mount: a backup
/// killed with SIGKILL while reading its clone leaks it; the next backup of that image, or
/// Remove-VolumeBackup -Incomplete through the in-flight record, removes exactly that clone and
/// touches nothing else in the directory (clones of other images, look-alike names, a symbolic
/// link named like a clone, a clone a live process holds).
/// </summary>
[Collection(CrashCollection.Name)]
public class CloneLeftoverTests(ITestOutputHelper output)
{
    [SystemFact(needsRoot: true, "mkfs.xfs", "losetup", "mount", "flock")]
    public void TheNextBackupRemovesTheCloneAKilledBackupLeftAndNothingElse() => AfterAKilledCloneBackup((s, volume, leaked, unchanged) =>
    {
        var log = new List<string>();
        var next = BackupOperation.Run(s.Repository, new BackupRequest { SourcePath = volume, Log = log.Add });
        output.WriteLine(string.Join(Environment.NewLine, log));

        Assert.Equal(ConsistencyMethod.ReflinkClone, next.Consistency);
        Assert.False(File.Exists(leaked), "the killed backup's clone is still there");
        Assert.Contains(log, m => m.Contains($"Removed '{leaked}'", StringComparison.Ordinal) && m.Contains("reflink clone", StringComparison.Ordinal));
        Assert.Contains(log, m => m.StartsWith("Removed the leftover of interrupted backup", StringComparison.Ordinal));
        unchanged();
        Assert.Equal([next.Backup.Id], s.Repository.List(includeIncomplete: true).Select(b => b.Id));
        Assert.Empty(InFlightRecord.All(s.RepoPath));
        s.Restore(next.Backup.Id, s.PathOf("out.img"));
        Assert.Equal(Scratch.Sha(volume), Scratch.Sha(s.PathOf("out.img")));
    });

    [SystemFact(needsRoot: true, "mkfs.xfs", "losetup", "mount", "flock")]
    public void RemoveIncompleteFollowsTheInFlightRecordToTheCloneAndRemovesOnlyIt() => AfterAKilledCloneBackup((s, _, leaked, unchanged) =>
    {
        var leftover = Assert.Single(s.Repository.List(includeIncomplete: true));
        Assert.Equal(BackupStatus.Incomplete, leftover.Status);
        Assert.Equal(leaked, InFlightRecord.TryRead(s.RepoPath, leftover.Id)!.Snapshot);

        Assert.Equal([leftover.Id], s.Repository.RemoveIncomplete(TimeSpan.Zero).Select(b => b.Id));

        Assert.False(File.Exists(leaked), "Remove-VolumeBackup -Incomplete left the clone its record names");
        unchanged();
        Assert.Empty(s.Repository.List(includeIncomplete: true));
        Assert.Empty(InFlightRecord.All(s.RepoPath));
        Assert.Equal([".blockbackup"], Directory.EnumerateFileSystemEntries(s.RepoPath).Select(Path.GetFileName)); // no container, no fan-out directory
    });

    /// <summary>
    /// On a fresh XFS mount: a backup killed while reading its clone, then the bystanders beside
    /// the image, then <paramref name="test"/> with the repository, the image, the leaked clone
    /// and a check that every bystander is as it was.
    /// </summary>
    private static void AfterAKilledCloneBackup(Action<Scratch, string, string, Action> test)
    {
        using var xfs = LoopFilesystem.TryCreate("xfs");
        Assert.True(xfs is not null, LoopFilesystem.WhyNot);
        using var s = new Scratch();
        var (volume, leaked) = KillWhileReadingClone(s, xfs!.MountPoint);
        using var bystanders = new Bystanders(xfs.MountPoint, volume);
        var before = bystanders.Snapshot();
        before.Remove(Path.GetFileName(leaked));
        test(s, volume, leaked, () => Assert.Equal(before, bystanders.Snapshot()));
    }

    [SystemFact(needsRoot: true, "mkfs.xfs", "losetup", "mount")]
    public void ARecordNamingSomethingElseRemovesNothing()
    {
        using var xfs = LoopFilesystem.TryCreate("xfs");
        Assert.True(xfs is not null, LoopFilesystem.WhyNot);
        var victim = Path.Combine(xfs!.MountPoint, "precious.img");
        File.WriteAllBytes(victim, [1, 2, 3]);
        var linked = Path.Combine(xfs.MountPoint, $".vm.img.blockbackup-clone-{Guid.NewGuid():N}");
        File.CreateSymbolicLink(linked, victim);

        // Hostile or stale records: not a clone's name, not normalised, a link named like a clone.
        Assert.False(ConsistentView.RemoveRecordedClone(victim));
        Assert.False(ConsistentView.RemoveRecordedClone(Path.Combine(xfs.MountPoint, "sub", "..", Path.GetFileName(linked))));
        Assert.False(ConsistentView.RemoveRecordedClone("relative/.vm.img.blockbackup-clone-" + Guid.NewGuid().ToString("N")));
        Assert.False(ConsistentView.RemoveRecordedClone(linked));
        Assert.True(File.Exists(victim) && new FileInfo(linked).LinkTarget == victim);
        Assert.Equal([1, 2, 3], File.ReadAllBytes(victim));
    }

    /// <summary>
    /// Backs up a 48 MiB image on the XFS mount with bbk (reflink clone) and kills it with SIGKILL
    /// once it reads the clone and has written objects. Returns the image and the leaked clone.
    /// </summary>
    private static (string Volume, string Clone) KillWhileReadingClone(Scratch s, string mount)
    {
        var volume = Path.Combine(mount, "vm.img");
        var data = new byte[48 << 20];
        new Random(5).NextBytes(data); // incompressible: slow enough to be caught reading
        File.WriteAllBytes(volume, data);
        using var child = Bbk.Start("backup", volume, s.RepoPath, "--compression", "bz2", "--object-size", "1048576");
        var stderr = child.StandardError.ReadToEndAsync();
        var clock = Stopwatch.StartNew();
        string? clone = null;
        while (clone is null || !Directory.EnumerateFiles(s.RepoPath, "*-0000?", SearchOption.AllDirectories).Any())
        {
            if (child.HasExited)
            {
                Assert.Fail($"the backup ended (exit {child.ExitCode}) before it could be killed: {stderr.Result}");
            }

            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), "the backup never got to read its clone");
            clone ??= Directory.GetFiles(mount, ".vm.img.blockbackup-clone-*").SingleOrDefault();
            Thread.Sleep(5);
        }

        child.Kill();
        child.WaitForExit();
        Assert.Equal(137, child.ExitCode);
        Assert.True(File.Exists(clone), "the kill left no clone to clean up");
        return (volume, clone);
    }

    /// <summary>
    /// What else lives beside the image and must survive any cleanup: another image's clone, names
    /// that only look like this image's clones, a symbolic link named exactly like one (and its
    /// target), and a clone-named file a live process holds locked (a backup still running).
    /// </summary>
    private sealed class Bystanders : IDisposable
    {
        private readonly string _dir;
        private readonly Process _holder;

        public Bystanders(string dir, string volume)
        {
            _dir = dir;
            var name = Path.GetFileName(volume);
            var hex = Guid.NewGuid().ToString("N");
            File.WriteAllText(Path.Combine(dir, "other.img"), "another image");
            File.WriteAllText(Path.Combine(dir, $".other.img.blockbackup-clone-{hex}"), "another image's clone");
            File.WriteAllText(Path.Combine(dir, $".{name}.blockbackup-clone-{hex}.keep"), "a longer name");
            File.WriteAllText(Path.Combine(dir, $".{name}.blockbackup-clone-not-hex-at-all-0000000000000"), "not a clone's name");
            File.WriteAllText(Path.Combine(dir, $"{name}.blockbackup-clone-{hex}"), "no leading dot");
            File.WriteAllText(Path.Combine(dir, "target-of-link"), "what the link points to");
            File.CreateSymbolicLink(Path.Combine(dir, $".{name}.blockbackup-clone-{Guid.NewGuid():N}"), Path.Combine(dir, "target-of-link"));
            var held = Path.Combine(dir, $".{name}.blockbackup-clone-{Guid.NewGuid():N}");
            File.WriteAllText(held, "a running backup's clone");
            _holder = Process.Start(new ProcessStartInfo("flock", ["--exclusive", held, "sh", "-c", "echo locked; sleep 60"]) { RedirectStandardOutput = true })!;
            Assert.Equal("locked", _holder.StandardOutput.ReadLine());
        }

        /// <summary>Every entry beside the image but the image itself: name, and size and time or link target.</summary>
        public SortedDictionary<string, string> Snapshot()
        {
            var all = new SortedDictionary<string, string>(StringComparer.Ordinal);
            foreach (var entry in new DirectoryInfo(_dir).EnumerateFileSystemInfos("*", new EnumerationOptions { AttributesToSkip = 0 }))
            {
                if (entry.Name == "vm.img" || entry is DirectoryInfo)
                {
                    continue;
                }

                // By size and time, not by reading: reading would meet the live holder's lock.
                all[entry.Name] = entry.LinkTarget is { } link ? "-> " + link : $"{((FileInfo)entry).Length} bytes, {entry.LastWriteTimeUtc.Ticks}";
            }

            return all;
        }

        public void Dispose()
        {
            _holder.Kill(entireProcessTree: true);
            _holder.WaitForExit();
        }
    }
}
