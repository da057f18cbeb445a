using System.Text;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Format;
using BlockBackup.Engine.Policies;
using Xunit;

namespace BlockBackup.Engine.Tests;

/// <summary>
/// What others who may write the bucket can plant (issue 18, items 3 and 8): entries reusing a
/// backup's id and names the naming pattern admits but no backup can have. On every store of the
/// contract, the real RGW's S3 and Swift included.
/// </summary>
public abstract partial class ObjectStoreRepositoryContract
{
    [ContractFact]
    public void AForgedInFlightRecordReusingTheNewestIdIsIgnoredAndRetentionKeepsTheNewest()
    {
        var volume = _scratch.MixedVolume("vol.img", 2 << 20, seed: 81);
        var older = Backup(volume).Backup;
        Scratch.Scribble(volume, seed: 82);
        var newest = Backup(volume, incremental: true).Backup;
        var newestSha = Scratch.Sha(volume);
        // A well-formed record naming the newest backup's id with another valid prefix of the volume.
        var forgedPrefix = ObjectNaming.ObjectStorePrefix("", newest.VolumeId, DateTime.UtcNow.AddMinutes(-1), "nova", newest.Id);
        Put($".blockbackup/inflight/{newest.Id:D}.json", Encoding.UTF8.GetBytes(
            $"{{\"backup_id\":\"{newest.Id:D}\",\"volume_id\":\"{newest.VolumeId:D}\",\"prefix\":\"{forgedPrefix}\",\"started\":\"2026-01-01T00:00:00Z\",\"host\":\"elsewhere\",\"pid\":4242}}"));

        var listed = Repository.List(includeIncomplete: true);
        Assert.Equal([older.Id, newest.Id], listed.Select(b => b.Id));
        Assert.All(listed, b => Assert.Equal(BackupStatus.Available, b.Status));

        // Limit-VolumeBackup -KeepLast 1 -RemoveDamaged, as the cmdlet does it.
        var plan = RetentionPlanner.Plan(listed, new RetentionRule { KeepLast = 1, RemoveDamaged = true }, DateTimeOffset.UtcNow, TimeZoneInfo.Utc);
        foreach (var b in plan.RemovalOrder)
        {
            Repository.Remove(b, includeDependents: false);
        }

        Assert.Equal([older.Id, newest.Id], Repository.List().Select(b => b.Id)); // the newest needs the older one
        Restore(newest.Id, _scratch.PathOf("out.img"));
        Assert.Equal(newestSha, Scratch.Sha(_scratch.PathOf("out.img")));
    }

    [ContractFact]
    public void ABackupKnownOnlyByItsInFlightRecordListsWithTheRecordedStart()
    {
        var id = Guid.NewGuid();
        var volumeId = Guid.NewGuid();
        var started = new DateTime(2026, 3, 4, 5, 6, 7, DateTimeKind.Utc);
        var prefix = ObjectNaming.ObjectStorePrefix("", volumeId, started, "nova", id);
        Put($".blockbackup/inflight/{id:D}.json", Encoding.UTF8.GetBytes($"{{\"backup_id\":\"{id:D}\",\"volume_id\":\"{volumeId:D}\",\"prefix\":\"{prefix}\",\"started\":\"2026-03-04T05:06:07.0000000Z\"}}"));

        var leftover = Assert.Single(Repository.List(includeIncomplete: true));
        Assert.Equal((id, BackupStatus.Incomplete, started), (leftover.Id, leftover.Status, leftover.CreatedUtc));
    }

    [ContractFact]
    public void RemovingATwinWithAnotherBackupsIdRemovesThatTwinOnly()
    {
        var volume = _scratch.MixedVolume("vol.img", 2 << 20, seed: 83);
        var full = Backup(volume).Backup;
        Scratch.Scribble(volume, seed: 84);
        var incremental = Backup(volume, incremental: true).Backup;
        var sha = Scratch.Sha(volume);
        var realNames = Names("volume_");
        // Objects under another prefix carrying the full backup's id: an incomplete twin of it.
        var twinPrefix = ObjectNaming.ObjectStorePrefix("", full.VolumeId, new DateTime(2030, 1, 1, 0, 0, 0, DateTimeKind.Utc), "nova", full.Id);
        Put(twinPrefix + "-00001", new byte[10]);

        var twin = Assert.Single(Repository.List(includeIncomplete: true), b => b.Status == BackupStatus.Incomplete);
        Assert.Equal((full.Id, twinPrefix), (twin.Id, twin.Prefix));
        // The twin is no parent: removing it neither refuses (dependents) nor takes the incremental along.
        Assert.Equal([twinPrefix], Repository.Remove(twin, includeDependents: true).Select(b => b.Prefix));
        Assert.Equal(realNames, Names("volume_"));
        Restore(incremental.Id, _scratch.PathOf("out.img"));
        Assert.Equal(sha, Scratch.Sha(_scratch.PathOf("out.img")));

        // By id, the id means the available backup (as Get does), never the twin.
        Put(twinPrefix + "-00001", new byte[10]);
        Assert.Equal("BackupHasDependents", Assert.Throws<BackupException>(() => Repository.Remove(full.Id, includeDependents: false)).ErrorId);
    }

    [ContractTheory]
    [InlineData("99999999999999", null)]
    [InlineData("20260101000000", "------------------------------------")]
    public void AStrayNameIsIgnoredWithAWarningNamingIt(string time, string? volumeId)
    {
        var volume = _scratch.MixedVolume("vol.img", 1 << 20, seed: 85);
        var good = Backup(volume).Backup;
        var stray = $"volume_{volumeId ?? "00000000-0000-0000-0000-000000000001"}/{time}/az_nova_backup_00000000-0000-0000-0000-000000000002_metadata";
        Put(stray, Encoding.UTF8.GetBytes("{}"));

        Assert.Equal([good.Id], Repository.List(includeIncomplete: true).Select(b => b.Id));
        var warning = Assert.Single(Repository.TakeWarnings());
        Assert.Contains(stray[..stray.IndexOf("_metadata", StringComparison.Ordinal)], warning, StringComparison.Ordinal);
        Assert.Contains(volumeId is null ? $"the time '{time}' is not a date" : "is not a UUID", warning, StringComparison.Ordinal);
        // Everything else still works, and the same warning is given once per handle.
        Restore(good.Id, _scratch.PathOf("out.img"));
        Assert.True(Repository.Verify(good.Id, includeChain: true).IsValid);
        Assert.Equal([good.Id], Repository.Remove(good.Id, includeDependents: false).Select(b => b.Id));
        Assert.Empty(Repository.TakeWarnings());
    }
}
