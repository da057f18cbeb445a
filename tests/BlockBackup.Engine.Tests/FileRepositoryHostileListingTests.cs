using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Policies;
using BlockBackup.Engine.Repository;
using Xunit;

namespace BlockBackup.Engine.Tests;

/// <summary>
/// The file repository's share of issue 18, items 3 and 8: a planted container reusing a backup's
/// id, and names the naming pattern admits but no backup can have.
/// </summary>
public sealed class FileRepositoryHostileListingTests
{
    [Fact]
    public void RetentionRemovesAPlantedTwinOfTheNewestBackupAndNeverTheNewestItself()
    {
        using var s = new Scratch();
        var volume = s.MixedVolume("vol.img", 2 << 20, seed: 91);
        var newest = s.Backup(volume).Backup;
        var sha = Scratch.Sha(volume);
        // One of its objects copied into another directory: an incomplete entry with the newest backup's id.
        var copied = Directory.EnumerateFiles(s.Repository.ContainerPath(newest), newest.Prefix + "-*").First();
        var twinDir = Path.Combine(s.RepoPath, "zz", "zz", "twin");
        Directory.CreateDirectory(twinDir);
        File.Copy(copied, Path.Combine(twinDir, Path.GetFileName(copied)));

        var listed = s.Repository.List(includeIncomplete: true);
        var twin = Assert.Single(listed, b => b.Status == BackupStatus.Incomplete);
        Assert.Equal(newest.Id, twin.Id);

        // Limit-VolumeBackup -KeepLast 1 -RemoveDamaged, as the cmdlet does it: the decided entries, exactly.
        var plan = RetentionPlanner.Plan(listed, new RetentionRule { KeepLast = 1, RemoveDamaged = true }, DateTimeOffset.UtcNow, TimeZoneInfo.Utc);
        Assert.Equal(["zz/zz/twin"], plan.RemovalOrder.Select(b => b.Container.Replace('\\', '/')));
        foreach (var b in plan.RemovalOrder)
        {
            s.Repository.Remove(b, includeDependents: false);
        }

        Assert.False(Directory.Exists(twinDir));
        Assert.Equal([newest.Id], s.Repository.List(includeIncomplete: true).Select(b => b.Id));
        s.Restore(newest.Id, s.PathOf("out.img"));
        Assert.Equal(sha, Scratch.Sha(s.PathOf("out.img")));
    }

    [Theory]
    [InlineData("volume_------------------------------------_20260101000000_backup_00000000-0000-0000-0000-000000000002_metadata")]
    [InlineData("volume_00000000-0000-0000-0000-000000000001_20260101000000_backup_0000000000000000000000000000000000-2-00001")]
    public void AStrayNameIsIgnoredWithAWarningNamingIt(string name)
    {
        using var s = new Scratch();
        var volume = s.MixedVolume("vol.img", 1 << 20, seed: 92);
        var good = s.Backup(volume).Backup;
        var dir = Path.Combine(s.RepoPath, "st", "ra", "stray");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, name), "{}");

        Assert.Equal([good.Id], s.Repository.List(includeIncomplete: true).Select(b => b.Id));
        var warning = Assert.Single(s.Repository.TakeWarnings());
        Assert.Contains(Path.Combine(dir, name), warning, StringComparison.Ordinal);
        Assert.Contains("is not a UUID", warning, StringComparison.Ordinal);
        s.Restore(good.Id, s.PathOf("out.img"));
        Assert.Equal([good.Id], s.Repository.Remove(good.Id, includeDependents: false).Select(b => b.Id));
        Assert.Empty(s.Repository.TakeWarnings());
    }

    [Theory]
    [InlineData("format", "4294967297")]
    [InlineData("compression_level", "2147483648")]
    public void AFieldOutOfTheInt32RangeMakesThatBackupDamagedAndBreaksNothingElse(string field, string value)
    {
        using var s = new Scratch();
        var volume = s.MixedVolume("vol.img", 1 << 20, seed: 93);
        var victim = s.Backup(volume).Backup;
        var good = s.Backup(volume).Backup;
        var path = s.Repository.MetadataPath(victim);
        var text = File.ReadAllText(path);
        Assert.Matches($"\"{field}\": -?\\d+", text);
        File.WriteAllText(path, System.Text.RegularExpressions.Regex.Replace(text, $"\"{field}\": -?\\d+", $"\"{field}\": {value}"));

        var listed = s.Repository.List(includeIncomplete: true);
        var damaged = Assert.Single(listed, b => b.Id == victim.Id);
        Assert.Equal(BackupStatus.Damaged, damaged.Status);
        Assert.Contains($"'{field}' {value} is out of the 32-bit range", damaged.Problem, StringComparison.Ordinal);
        Assert.Equal(BackupStatus.Available, Assert.Single(listed, b => b.Id == good.Id).Status);
        Assert.Equal("BackupDamaged", Assert.Throws<BackupException>(() => s.Restore(victim.Id, s.PathOf("out.img"))).ErrorId);
        s.Restore(good.Id, s.PathOf("good.img"));
    }
}
