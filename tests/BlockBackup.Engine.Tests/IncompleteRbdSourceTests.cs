using BlockBackup.Engine.ObjectStores;
using BlockBackup.Engine.Repository;
using Xunit;

namespace BlockBackup.Engine.Tests;

/// <summary>
/// A backup of an RBD image into a chunked repository names the image in its in-flight record, so
/// that Remove-VolumeBackup -Incomplete, which removes the leftover, learns where to look for the
/// snapshot the backup may have left (the image's own mark then says which one; RbdPool.Tests.ps1
/// kills such a backup on a real cluster). Killed before its first object, a backup is known
/// only by that record: it still lists as incomplete and goes with the cleanup, in either layout.
/// </summary>
public sealed class IncompleteRbdSourceTests : IDisposable
{
    private readonly Scratch _scratch = new();

    public void Dispose() => _scratch.Dispose();

    public static TheoryData<string> Kinds => new() { "file", "object store" };

    [Theory]
    [MemberData(nameof(Kinds))]
    public void ABackupKilledBeforeItsFirstObjectListsAsIncompleteAndItsRemovalNamesItsImage(string kind)
    {
        IChunkedRepository repository = kind == "file" ? _scratch.Repository : new ObjectStoreRepository(new MemoryObjectStore(), RepositoryKind.S3, "volumebackups");
        var volumeId = Guid.NewGuid();
        NewBackup killed;
        NewBackup plain;
        using (var volumeLock = repository.AcquireLock(volumeId, "backup", CancellationToken.None))
        {
            // Neither completed nor abandoned: what a kill leaves.
            killed = repository.BeginBackup(volumeLock, volumeId, Guid.NewGuid(), DateTime.UtcNow, rbdSource: "rbd:volumes/volume-1");
            plain = repository.BeginBackup(volumeLock, volumeId, Guid.NewGuid(), DateTime.UtcNow.AddSeconds(1));
        }

        Assert.All(repository.List(includeIncomplete: true), b => Assert.Equal(BackupStatus.Incomplete, b.Status));
        var removed = repository.RemoveIncomplete(TimeSpan.Zero).ToDictionary(b => b.Id);
        Assert.Equal("rbd:volumes/volume-1", removed[killed.BackupId].Source);
        Assert.Null(removed[plain.BackupId].Source);
        Assert.Empty(repository.List(includeIncomplete: true));
    }
}
