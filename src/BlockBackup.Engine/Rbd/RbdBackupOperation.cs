using System.Diagnostics;
using BlockBackup.Engine.Errors;

namespace BlockBackup.Engine.Rbd;

public sealed class RbdBackupRequest
{
    public required RbdImageRef Source { get; init; }
    /// <summary>Defaults to a UUID derived from the image spec, so every backup of an image shares it.</summary>
    public Guid? VolumeId { get; init; }
    public string? Name { get; init; }
    public string? Description { get; init; }
    public bool Incremental { get; init; }
    public Guid? ParentId { get; init; }
    /// <summary>Backup snapshots to keep on the source (oldest removed); 0 keeps all (Cinder's backup_ceph_max_snapshots).</summary>
    public int KeepSourceSnapshots { get; init; }
    /// <summary>Told what the backup did besides (leftovers of interrupted backups removed).</summary>
    public Action<string>? Log { get; init; }
    /// <summary>The backup policy making this backup (recorded with it, see <see cref="Operations.BackupRequest.Policy"/>).</summary>
    public string? Policy { get; init; }
}

public sealed class RbdBackupResult
{
    public required BackupInfo Backup { get; init; }
    public BackupInfo? Parent { get; init; }
    /// <summary>True when only what changed since the parent's snapshot was transferred.</summary>
    public required bool Differential { get; init; }
    /// <summary>Why a full transfer was made (no parent, or the parent's snapshot is gone from the source).</summary>
    public required string Reason { get; init; }
    public required string SourceSnapshot { get; init; }
    /// <summary>Bytes of changed extents transferred (data written plus ranges zeroed).</summary>
    public required long DiffBytes { get; init; }
    public required TimeSpan Duration { get; init; }
}

/// <summary>
/// Backs up an RBD image into an RBD backup pool with Cinder's Ceph driver design: snapshot the
/// source, then <c>export-diff [--from-snap parent] | import-diff</c> into the base image, so an
/// incremental costs what changed. On failure, what this backup created is removed.
/// </summary>
public static class RbdBackupOperation
{
    public static RbdBackupResult Run(RbdBackupPool pool, RbdBackupRequest request, IProgress<OperationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var clock = Stopwatch.StartNew();
        var client = pool.Client;
        var source = request.Source;
        var size = client.ImageSize(source) ?? throw new BackupException(BackupErrorKind.NotFound, "RbdImageNotFound", $"The RBD image '{source}' does not exist.", source.Spec);
        var volumeId = request.VolumeId ?? RbdBackupPool.VolumeIdFor(source);
        // Only this volume's base images are read.
        var existing = request.Incremental ? pool.List(request.ParentId is null ? volumeId : null) : [];
        var parent = ChooseParent(request, existing, volumeId, pool);
        string? fromSnapshot = null;
        var reason = "full backup: no parent";
        RbdImageRef baseImage;
        if (parent is not null)
        {
            baseImage = pool.Image(parent.Container);
            IReadOnlyList<RbdSnapshot> baseSnapshots;
            try
            {
                baseSnapshots = client.Snapshots(baseImage);
            }
            catch (BackupException ex) when (ex.ErrorId == "RbdNotFound")
            {
                throw new BackupException(BackupErrorKind.InvalidData, "BaseImageMissing", $"Can't find base image '{baseImage}' of parent backup {parent.Id}; do a full backup.", parent.Id, ex);
            }

            if (!baseSnapshots.Any(s => s.Name == parent.Prefix))
            {
                throw new BackupException(BackupErrorKind.InvalidData, "ParentSnapshotMissing", $"Can't find snapshot '{parent.Prefix}' of parent backup {parent.Id} on base image '{baseImage}'; do a full backup.", parent.Id);
            }

            if (client.Snapshots(source).Any(s => s.Name == parent.Prefix))
            {
                fromSnapshot = parent.Prefix;
                reason = $"differential from snapshot '{parent.Prefix}' of backup {parent.Id}";
            }
            else
            {
                // As Cinder does when backup snapshots were pruned from the source: a new full backup.
                reason = $"full backup: the parent's snapshot '{parent.Prefix}' is no longer on {source}, so changes cannot be computed";
                parent = null;
            }
        }

        var backupId = Guid.NewGuid();
        var created = DateTime.UtcNow;
        var snapshot = RbdBackupPool.SnapshotName(backupId, created);
        var createdBase = false;
        baseImage = parent is null ? pool.Image(RbdBackupPool.BaseName(volumeId, backupId)) : pool.Image(parent.Container);
        // Leftovers of this volume's interrupted backups whose process is gone go first: their
        // base images, marks and the snapshots they took of the source.
        foreach (var leftover in pool.RemoveIncomplete(Repository.IncompleteBackups.DefaultMinimumAge, volumeId))
        {
            request.Log?.Invoke(leftover.Container == RbdBackupPool.BaseName(volumeId, leftover.Id)
                ? $"Removed base image '{leftover.Container}' that interrupted backup {leftover.Id} of volume {volumeId} left in {pool.Repository}: {leftover.Problem}."
                : $"Removed what interrupted backup {leftover.Id} of volume {volumeId} left on base image '{leftover.Container}' in {pool.Repository}: {leftover.Problem}.");
        }

        // Marked before the source is snapshotted or anything copied, so a kill at any later point
        // leaves a leftover cleanup knows.
        var mark = RbdInFlight.ForThisProcess(backupId, volumeId, source, snapshot).ToJson();
        var markKey = parent is null ? RbdInFlight.Key : RbdInFlight.IncrementalKey(backupId);
        if (parent is null)
        {
            client.CreateImage(baseImage, size);
            createdBase = true;
        }

        try
        {
            client.SetImageMetadata(baseImage, markKey, mark);
        }
        catch
        {
            Cleanup(client, baseImage, createdBase, snapshot, source, createdSourceSnapshot: false, markKey);
            throw;
        }

        var createdSourceSnapshot = false;
        try
        {
            progress?.Report(new OperationProgress(OperationPhase.Preparing, 0, size, $"Snapshot {source}@{snapshot}"));
            client.CreateSnapshot(source, snapshot);
            createdSourceSnapshot = true;
            ExtentCopyStats moved;
            // One handle on the base for the copy, its snapshot and the record: it takes the
            // image's exclusive lock once.
            using (var target = client.Open(baseImage, readOnly: false))
            {
                moved = client.CopyDiff(source, snapshot, fromSnapshot, target, progress, OperationPhase.Writing, cancellationToken);
                RbdBackupPool.WriteRecord(target, new RbdBackupPool.Record(backupId, volumeId, parent?.Id, request.Name, request.Description, created, source.Spec, baseImage.Image, snapshot, request.Policy));
            }

            client.RemoveImageMetadata(baseImage, markKey); // the snapshot exists: no longer a leftover

            if (request.KeepSourceSnapshots > 0)
            {
                PruneSourceSnapshots(client, source, request.KeepSourceSnapshots);
            }

            var info = new BackupInfo
            {
                Id = backupId, VolumeId = volumeId, Name = request.Name, Description = request.Description, CreatedUtc = created,
                ParentId = parent?.Id, Status = BackupStatus.Available, VolumeSize = size, Compression = "none",
                Consistency = "rbd-snapshot", Source = source.Spec, Policy = request.Policy, WrittenBy = "BlockBackup", Repository = pool.Repository,
                Container = baseImage.Image, Prefix = snapshot, ServiceMetadata = RbdBackupPool.ServiceMetadata(baseImage.Image),
            };
            return new RbdBackupResult
            {
                Backup = info,
                Parent = parent,
                Differential = fromSnapshot is not null,
                Reason = reason,
                SourceSnapshot = snapshot,
                DiffBytes = moved.DataBytes + moved.ZeroedBytes,
                Duration = clock.Elapsed,
            };
        }
        catch
        {
            Cleanup(client, baseImage, createdBase, snapshot, source, createdSourceSnapshot, markKey);
            throw;
        }
    }

    private static BackupInfo? ChooseParent(RbdBackupRequest request, IReadOnlyList<BackupInfo> existing, Guid volumeId, RbdBackupPool pool)
    {
        if (!request.Incremental)
        {
            return null;
        }

        if (request.ParentId is { } id)
        {
            var named = existing.FirstOrDefault(b => b.Id == id) ?? throw new BackupException(BackupErrorKind.NotFound, "BackupNotFound", $"No backup with id {id} in {pool.Repository}.", id);
            if (named.VolumeId != volumeId)
            {
                throw new BackupException(BackupErrorKind.InvalidArgument, "ParentOfAnotherVolume", $"Backup {id} belongs to volume {named.VolumeId}, not {volumeId}.", id);
            }

            return named;
        }

        return existing.Where(b => b.VolumeId == volumeId).MaxBy(b => (b.CreatedUtc, b.Prefix))
            ?? throw new BackupException(BackupErrorKind.InvalidOperation, "NoParentBackup",
                $"No backup of volume {volumeId} exists in {pool.Repository} to base an incremental backup on. Make a full backup first.", volumeId);
    }

    /// <summary>Removes the oldest backup snapshots on the source beyond <paramref name="keep"/>.</summary>
    internal static void PruneSourceSnapshots(RbdClient client, RbdImageRef source, int keep)
    {
        var backups = client.Snapshots(source).Where(s => RbdBackupPool.SnapshotRegex().IsMatch(s.Name)).OrderBy(s => s.Id).ToList();
        foreach (var old in backups.Take(Math.Max(0, backups.Count - keep)))
        {
            client.RemoveSnapshot(source, old.Name);
        }
    }

    private static void Cleanup(RbdClient client, RbdImageRef baseImage, bool createdBase, string snapshot, RbdImageRef source, bool createdSourceSnapshot, string markKey)
    {
        bool Try(Action action)
        {
            try
            {
                action();
                return true;
            }
            catch (BackupException)
            {
                return false; // best effort: report the original failure, not the cleanup's
            }
        }

        if (createdBase)
        {
            Try(() =>
            {
                foreach (var s in client.Snapshots(baseImage))
                {
                    client.RemoveSnapshot(baseImage, s.Name);
                }

                client.RemoveImage(baseImage);
            });
        }
        else
        {
            Try(() =>
            {
                if (client.Snapshots(baseImage).Any(s => s.Name == snapshot))
                {
                    client.RemoveSnapshot(baseImage, snapshot);
                }
            });
        }

        var sourceClean = !createdSourceSnapshot || Try(() => client.RemoveSnapshot(source, snapshot));

        // Last, and only once the source snapshot is gone: while it remains, the mark says whose it is.
        if (!createdBase && sourceClean)
        {
            Try(() => client.RemoveImageMetadata(baseImage, markKey));
        }
    }

    /// <summary>
    /// Deletes a pool backup: its snapshot on the base, the base once no backup snapshot remains,
    /// and its snapshot on the source. Refused while later backups depend on it, unless
    /// <paramref name="includeDependents"/> (then those go first, newest first).
    /// </summary>
    public static IReadOnlyList<BackupInfo> Remove(RbdBackupPool pool, Guid backupId, bool includeDependents)
    {
        var client = pool.Client;
        var all = pool.List();
        var target = all.FirstOrDefault(b => b.Id == backupId) ?? throw new BackupException(BackupErrorKind.NotFound, "BackupNotFound", $"No backup with id {backupId} in {pool.Repository}.", backupId);
        var dependents = BackupGraph.Dependents(all, backupId);

        if (dependents.Count > 0 && !includeDependents)
        {
            throw new BackupException(BackupErrorKind.InvalidOperation, "BackupHasDependents",
                $"Backup {backupId} has {dependents.Count} dependent incremental backup(s) ({string.Join(", ", dependents.Select(d => d.Id))}). Delete them first, or pass -IncludeDependents.", backupId);
        }

        var order = dependents.OrderByDescending(d => d.CreatedUtc).Append(target).ToList();
        foreach (var backup in order)
        {
            var baseImage = pool.Image(backup.Container);
            if (client.Snapshots(baseImage).Any(s => s.Name == backup.Prefix))
            {
                client.RemoveSnapshot(baseImage, backup.Prefix);
            }

            pool.RemoveRecord(baseImage, backup.Id);
            if (!client.Snapshots(baseImage).Any(s => RbdBackupPool.SnapshotRegex().IsMatch(s.Name)))
            {
                foreach (var s in client.Snapshots(baseImage))
                {
                    client.RemoveSnapshot(baseImage, s.Name);
                }

                client.RemoveImage(baseImage);
            }

            if (backup.Source is not null)
            {
                var source = RbdImageRef.Parse(backup.Source);
                try
                {
                    if (client.Snapshots(source).Any(s => s.Name == backup.Prefix))
                    {
                        client.RemoveSnapshot(source, backup.Prefix);
                    }
                }
                catch (BackupException ex) when (ex.ErrorId == "RbdNotFound")
                {
                    // The source volume is gone: nothing to clean there (backups are independent copies).
                }
            }
        }

        return order;
    }
}
