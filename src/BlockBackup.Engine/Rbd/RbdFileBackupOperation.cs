using System.Diagnostics;
using BlockBackup.Engine.Consistency;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Format;
using BlockBackup.Engine.Operations;
using BlockBackup.Engine.Repository;

namespace BlockBackup.Engine.Rbd;

/// <summary>
/// Backs up an RBD image into a chunked repository (file/NFS, S3, Swift) in Cinder's chunked format. The image is
/// snapshotted (<c>backup.&lt;id&gt;.snap.&lt;time&gt;</c>, recorded in the backup); when the parent
/// backup's snapshot is still on the image, only the objects that changed since it (from the
/// fast-diff object map when the image has one) are read through librbd and unchanged blocks' hashes come from the parent's list, so an incremental
/// costs what changed. Otherwise the whole image is read (the result says so) and compared with
/// the parent's hashes as for any volume.
/// </summary>
public static class RbdFileBackupOperation
{
    public static BackupResult Run(IChunkedRepository repository, RbdClient client, RbdImageRef source, BackupRequest request, int keepSourceSnapshots = 0,
        IProgress<OperationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        BackupOperation.Validate(request);
        var clock = Stopwatch.StartNew();
        var (size, objectSize) = client.ImageInfo(source) ?? throw new BackupException(BackupErrorKind.NotFound, "RbdImageNotFound", $"The RBD image '{source}' does not exist.", source.Spec);
        var volumeId = request.VolumeId ?? RbdBackupPool.VolumeIdFor(source);
        using var volumeLock = repository.AcquireLock(volumeId, "backup", cancellationToken, progress);
        var leftovers = BackupOperation.RemoveLeftovers(repository, volumeLock, request.Log, progress, cancellationToken);
        RemoveAbandonedSnapshots(client, source, repository, request.Log);
        var parent = BackupOperation.ChooseParent(repository, request, volumeId, size, leftovers);

        string? fromSnapshot = null;
        var reason = parent is null ? "full read: no parent backup" : null;
        if (parent is not null)
        {
            var parentSnapshot = repository.ReadMetadata(parent).Extra?.SourceSnapshot;
            if (parentSnapshot is null)
            {
                reason = $"full read: parent backup {parent.Id} recorded no RBD snapshot";
            }
            else if (objectSize < request.HashBlockSize)
            {
                reason = $"full read: the image's {objectSize}-byte objects are smaller than a {request.HashBlockSize}-byte hash block";
            }
            else if (!client.Snapshots(source).Any(s => s.Name == parentSnapshot))
            {
                reason = $"full read: the parent's snapshot '{parentSnapshot}' is no longer on {source}";
            }
            else
            {
                fromSnapshot = parentSnapshot;
                reason = $"differential: only extents changed since snapshot '{parentSnapshot}' were read";
            }
        }

        // The repository's in-flight record names the image, so Remove-VolumeBackup -Incomplete
        // can find the snapshot a kill leaves there (the image's mark says which one it is).
        var backup = repository.BeginBackup(volumeLock, volumeId, Guid.NewGuid(), DateTime.UtcNow, rbdSource: "rbd:" + source.Spec);
        var snapshot = RbdBackupPool.SnapshotName(backup.BackupId, backup.StartedUtc);
        BackupOperation.BackupJob? job = null;
        var committed = false;
        // The source is marked before it is snapshotted: a kill from here on leaves a snapshot the
        // next backup of the image into this repository knows to remove.
        var markKey = RbdInFlight.IncrementalKey(backup.BackupId);
        var marked = false;
        var snapshotted = false;
        try
        {
            client.SetImageMetadata(source, markKey, RbdInFlight.ForThisProcess(backup.BackupId, volumeId, source, snapshot, repository.Location).ToJson());
            marked = true;
            client.CreateSnapshot(source, snapshot);
            snapshotted = true;
            var jobRequest = new BackupRequest
            {
                SourcePath = "rbd:" + source.Spec, VolumeId = volumeId, Name = request.Name, Description = request.Description,
                Incremental = request.Incremental, ParentId = request.ParentId, Compression = request.Compression,
                CompressionLevel = request.CompressionLevel, ObjectSize = request.ObjectSize, HashBlockSize = request.HashBlockSize,
                Workers = request.Workers, Policy = request.Policy,
            };
            job = new BackupOperation.BackupJob(repository, jobRequest, null, parent, backup, size, progress, cancellationToken);
            ObjectList written;
            using (var image = client.Open(source, snapshot))
            {
                var (snapshotSize, _) = image.Stat();
                if (snapshotSize != size)
                {
                    throw new BackupException(BackupErrorKind.InvalidData, "RbdSizeMismatch", $"{source.SnapSpec(snapshot)} is {snapshotSize} bytes, the image {size}; it was resized during the backup.", source.Spec);
                }

                // Whole objects: the object map answers without asking each object, and they
                // cover whole hash blocks. Holes inside them read as zeros.
                var extents = image.Diff(fromSnapshot, wholeObject: true, 0, size, cancellationToken);
                using var diff = new RbdImageDiffSource(image, extents, size, objectSize);
                written = job.RunFromDiff(diff, differential: fromSnapshot is not null);
            }

            var info = BackupOperation.Commit(repository, jobRequest, job, written,
                new BackupOperation.CommitInfo(backup, parent, ConsistencyNames.ToRecordName(ConsistencyMethod.RbdSnapshot), "rbd:" + source.Spec, snapshot, size),
                progress, cancellationToken);
            committed = true;
            TryRemoveMark(client, source, markKey); // left behind, the next backup finds the backup exists and removes only the mark
            if (keepSourceSnapshots > 0)
            {
                RbdBackupOperation.PruneSourceSnapshots(client, source, keepSourceSnapshots);
            }

            return new BackupResult
            {
                Backup = info,
                Parent = parent,
                Consistency = ConsistencyMethod.RbdSnapshot,
                ConsistencyDetail = $"RBD snapshot {source.SnapSpec(snapshot)}; {reason}",
                BytesRead = job.BytesRead,
                BytesBackedUp = written.Sum(o => o.Length),
                Duration = clock.Elapsed,
            };
        }
        catch when (!committed)
        {
            // After the commit the backup exists and records this snapshot as its parent point for
            // the next differential: a failure pruning older snapshots must take away neither.
            repository.AbandonBackup(backup);
            try
            {
                if (snapshotted)
                {
                    client.RemoveSnapshot(source, snapshot);
                }

                if (marked)
                {
                    client.RemoveImageMetadata(source, markKey); // only once the snapshot is gone: until then the mark says whose it is
                }
            }
            catch (BackupException)
            {
                // Report the original failure; a leftover snapshot is only space, and its mark remains for the next backup.
            }

            throw;
        }
        finally
        {
            job?.Hashes.Dispose();
        }
    }

    /// <summary>
    /// Removes the snapshots that interrupted backups of <paramref name="source"/> into this
    /// repository took (their marks on the image name them) once their process is gone or they
    /// are older than the minimum age; a mark whose backup completed goes alone, as its snapshot
    /// is that backup's parent point. Marks of other repositories, and snapshots no mark names
    /// (Cinder's), are never touched.
    /// </summary>
    internal static void RemoveAbandonedSnapshots(RbdClient client, RbdImageRef source, IChunkedRepository repository, Action<string>? log)
    {
        var marks = MarksOf(client, source, repository.Location, backupId: null, Repository.IncompleteBackups.DefaultMinimumAge);
        if (marks.Count == 0)
        {
            return;
        }

        var completed = repository.List(includeIncomplete: false).Select(b => b.Id).ToHashSet();
        foreach (var (key, mark) in marks)
        {
            if (RemoveMarked(client, source, key, mark, snapshotToo: !completed.Contains(mark.BackupId)) is { } removed)
            {
                log?.Invoke($"Removed snapshot {removed} that interrupted backup {mark.BackupId} took of the source ({repository.Location}).");
            }
        }
    }

    /// <summary>
    /// For Remove-VolumeBackup -Incomplete, once it removed <paramref name="backupId"/>'s leftover
    /// from <paramref name="repository"/>: the snapshot that backup took of <paramref name="source"/>
    /// (as the image's mark names it) and the mark, when the mark is old enough by
    /// <paramref name="minimumAge"/> or its process is gone. Returns the snapshot removed, or null
    /// when the image holds no such mark (or no longer that snapshot).
    /// </summary>
    public static string? RemoveSnapshotOfIncomplete(RbdClient client, RbdImageRef source, IBackupRepository repository, Guid backupId, TimeSpan minimumAge)
    {
        string? removed = null;
        foreach (var (key, mark) in MarksOf(client, source, repository.Location, backupId, minimumAge))
        {
            removed = RemoveMarked(client, source, key, mark, snapshotToo: true) ?? removed;
        }

        return removed;
    }

    /// <summary>The marks on <paramref name="source"/> of backups into <paramref name="repositoryLocation"/> (of one backup, when given) that may be acted on now.</summary>
    private static List<(string Key, RbdInFlight Mark)> MarksOf(RbdClient client, RbdImageRef source, string repositoryLocation, Guid? backupId, TimeSpan minimumAge)
    {
        var now = DateTime.UtcNow;
        var marks = new List<(string, RbdInFlight)>();
        foreach (var (key, value) in client.ImageMetadata(source))
        {
            if (RbdInFlight.IsKey(key) && RbdInFlight.Parse(value) is { } mark && key == RbdInFlight.IncrementalKey(mark.BackupId)
                && mark.Repository == repositoryLocation && (backupId is null || mark.BackupId == backupId) && mark.MayRemove(minimumAge, now))
            {
                marks.Add((key, mark));
            }
        }

        return marks;
    }

    /// <summary>Removes the mark, after the snapshot it names when <paramref name="snapshotToo"/> (until then the mark says whose the snapshot is); returns the snapshot removed.</summary>
    private static string? RemoveMarked(RbdClient client, RbdImageRef source, string key, RbdInFlight mark, bool snapshotToo)
    {
        string? removed = null;
        if (snapshotToo && mark.SourceSnapshot() is var (image, snapshot) && image == source && client.Snapshots(source).Any(s => s.Name == snapshot))
        {
            client.RemoveSnapshot(source, snapshot);
            removed = source.SnapSpec(snapshot);
        }

        client.RemoveImageMetadata(source, key);
        return removed;
    }

    private static void TryRemoveMark(RbdClient client, RbdImageRef source, string key)
    {
        try
        {
            client.RemoveImageMetadata(source, key);
        }
        catch (BackupException)
        {
            // The backup exists; a stale mark costs nothing and the next backup removes it.
        }
    }
}
