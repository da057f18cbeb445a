using System.Diagnostics;
using BlockBackup.Engine.Consistency;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Operations;
using Xunit;

namespace BlockBackup.Engine.Tests;

public class ConsistencyTests
{
    [SystemFact(needsRoot: false, "sh")]
    public void VolumeOpenForWritingIsRefusedWithoutForce()
    {
        using var s = new Scratch();
        var volume = s.MixedVolume("busy.img", 1 << 20, 1);
        using var writer = Process.Start(new ProcessStartInfo("sh", ["-c", $"exec 3>>'{volume}'; echo ready; sleep 30"]) { RedirectStandardOutput = true })!;
        try
        {
            Assert.Equal("ready", writer.StandardOutput.ReadLine());
            var busy = Assert.Throws<BackupException>(() => BackupOperation.Run(s.Repository, new BackupRequest { SourcePath = volume, UseSnapshot = false }));
            Assert.Equal("VolumeInUse", busy.ErrorId);
            Assert.Contains($"process {writer.Id}", busy.Message, StringComparison.Ordinal);
            Assert.Empty(s.Repository.List(includeIncomplete: true));

            var forced = BackupOperation.Run(s.Repository, new BackupRequest { SourcePath = volume, UseSnapshot = false, Force = true });
            Assert.Equal(ConsistencyMethod.DirectForced, forced.Consistency);
            Assert.Equal("direct-forced", s.Repository.Get(forced.Backup.Id).Consistency);
            Assert.Equal("direct-forced", s.Repository.ReadMetadata(forced.Backup).Extra!.Consistency);
        }
        finally
        {
            writer.Kill(entireProcessTree: true);
            writer.WaitForExit();
        }
    }

    [SystemFact(needsRoot: true, "mkfs.xfs", "losetup", "mount")]
    public void ReflinkCloneOnXfsIsUsedAndRemovedEvenWhenTheFileIsInUse()
    {
        using var xfs = LoopFilesystem.TryCreate("xfs");
        Assert.True(xfs is not null, LoopFilesystem.WhyNot);
        using var s = new Scratch();
        var volume = Path.Combine(xfs!.MountPoint, "vm.img");
        File.Copy(s.MixedVolume("src.img", 4 << 20, 2), volume);
        using var writer = Process.Start(new ProcessStartInfo("sh", ["-c", $"exec 3>>'{volume}'; echo ready; sleep 30"]) { RedirectStandardOutput = true })!;
        try
        {
            Assert.Equal("ready", writer.StandardOutput.ReadLine());
            var result = BackupOperation.Run(s.Repository, new BackupRequest { SourcePath = volume });
            Assert.Equal(ConsistencyMethod.ReflinkClone, result.Consistency);
            Assert.Equal([Path.GetFileName(volume)], Directory.GetFiles(xfs.MountPoint).Select(Path.GetFileName));
            s.Restore(result.Backup.Id, s.PathOf("out.img"));
            Assert.Equal(Scratch.Sha(volume), Scratch.Sha(s.PathOf("out.img")));
        }
        finally
        {
            writer.Kill(entireProcessTree: true);
            writer.WaitForExit();
        }
    }

    [SystemFact(needsRoot: true, "losetup")]
    public void BlockDevicesAreBackedUpByDeviceSizeAndRestoredOntoDevices()
    {
        using var source = LoopDevice.TryAttach(5 << 20);
        using var target = LoopDevice.TryAttach(6 << 20);
        using var small = LoopDevice.TryAttach(2 << 20);
        Assert.True(source is not null && target is not null && small is not null, LoopDevice.WhyNot);
        using var s = new Scratch();
        File.Copy(s.MixedVolume("content.img", 5 << 20, 3), source!.BackingFile, overwrite: true);
        var backup = BackupOperation.Run(s.Repository, new BackupRequest { SourcePath = source.Device, ObjectSize = 1 << 20 });
        Assert.Equal(5 << 20, backup.Backup.VolumeSize);
        Assert.Equal(Volumes.VolumeIdentity.ForPath(source.Device), backup.Backup.VolumeId);

        var refused = Assert.Throws<BackupException>(() => s.Restore(backup.Backup.Id, target!.Device));
        Assert.Equal("TargetHasData", refused.ErrorId);
        var tooSmall = Assert.Throws<BackupException>(() => s.Restore(backup.Backup.Id, small!.Device, overwrite: true));
        Assert.Equal("TargetTooSmall", tooSmall.ErrorId);

        File.WriteAllBytes(target!.BackingFile, Enumerable.Repeat((byte)0xEE, 6 << 20).ToArray());
        var result = s.Restore(backup.Backup.Id, target.Device, overwrite: true);
        Assert.False(result.TargetWasNew);
        var restored = File.ReadAllBytes(target.BackingFile);
        Assert.Equal(File.ReadAllBytes(s.PathOf("content.img")), restored[..(5 << 20)]);
        Assert.All(restored[(5 << 20)..], b => Assert.Equal(0xEE, b)); // beyond the volume: untouched
    }
}
