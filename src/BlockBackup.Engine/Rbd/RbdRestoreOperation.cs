using System.Diagnostics;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Operations;

namespace BlockBackup.Engine.Rbd;

public sealed class RbdRestoreRequest
{
    public required Guid BackupId { get; init; }
    /// <summary>An RBD image (created with the backup's size when missing)…</summary>
    public RbdImageRef? TargetImage { get; init; }
    /// <summary>…or a file or block device.</summary>
    public string? TargetPath { get; init; }
    /// <summary>Allow overwriting a target that holds data.</summary>
    public bool Overwrite { get; init; }
}

/// <summary>What an RBD restore will do, decided before anything is written (also shown under -WhatIf).</summary>
public sealed record RbdRestorePlan(BackupInfo Backup, RbdRestoreFacts Facts, RestoreDecision Decision, bool TargetExists, bool TargetHoldsData, long TargetSize)
{
    /// <summary>A later backup was written to the same base, so the base's HEAD is not this backup's state.</summary>
    public bool NewerBackupOnBase { get; init; }
}

/// <summary>
/// Restores a backup from an RBD backup pool: differentially (export-diff base@restore point |
/// import-diff, then resized to the requested size) when Cinder's rules allow, else — or when the
/// differential transfer fails — by a full sparse copy of the restore point.
/// </summary>
public static class RbdRestoreOperation
{
    public static RbdRestorePlan Plan(RbdBackupPool pool, RbdRestoreRequest request)
    {
        if ((request.TargetImage is null) == (request.TargetPath is null))
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidRestoreTarget", "Give exactly one target: an RBD image or a file/device path.", request.BackupId);
        }

        var client = pool.Client;
        var backups = pool.List();
        var backup = backups.FirstOrDefault(b => b.Id == request.BackupId)
            ?? throw new BackupException(BackupErrorKind.NotFound, "BackupNotFound", $"No backup with id {request.BackupId} in {pool.Repository}.", request.BackupId);
        // Rule 1 looks at the base the backup was written to (Cinder's service_metadata); the data
        // may still be found elsewhere (a base renamed to the legacy name), which a full copy uses.
        var recordedBase = pool.Image(RbdBackupPool.RecordedBase(backup) ?? backup.Container);
        var baseImage = pool.Image(backup.Container);
        var baseExists = client.ImageSize(recordedBase) is not null;
        var restorePoint = baseExists ? client.Snapshots(recordedBase).FirstOrDefault(s => s.Name == backup.Prefix)?.Name : null;
        bool exists, holdsData, isSource = false;
        long targetSize, allocated = 0;
        if (request.TargetImage is { } image)
        {
            var size = client.ImageSize(image);
            exists = size is not null;
            targetSize = size ?? backup.VolumeSize;
            if (exists)
            {
                allocated = client.Diff(image).Where(e => e.Exists).Sum(e => e.Length);
            }

            holdsData = allocated > 0;
            isSource = image.Spec == backup.Source || RbdBackupPool.VolumeIdFor(image) == backup.VolumeId;
        }
        else
        {
            var inspected = RestoreTarget.Inspect(Path.GetFullPath(request.TargetPath!));
            exists = inspected.Exists;
            holdsData = inspected.HoldsData;
            targetSize = Math.Max(inspected.Size, backup.VolumeSize);
        }

        var facts = new RbdRestoreFacts(recordedBase.Image, baseExists, restorePoint, request.TargetImage is not null, isSource, holdsData, allocated);
        return new RbdRestorePlan(backup, facts, RbdRestoreEligibility.Decide(facts), exists, holdsData, targetSize)
        {
            NewerBackupOnBase = backups.Any(b => b.Container == backup.Container && b.CreatedUtc > backup.CreatedUtc),
        };
    }

    public static RestoreResult Run(RbdBackupPool pool, RbdRestoreRequest request, IProgress<OperationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var clock = Stopwatch.StartNew();
        var plan = Plan(pool, request);
        var backup = plan.Backup;
        if (plan.TargetHoldsData && !request.Overwrite)
        {
            throw new BackupException(BackupErrorKind.InvalidOperation, "TargetHasData",
                $"The target '{request.TargetImage?.Spec ?? request.TargetPath}' already holds data. Restoring would overwrite it; pass -Force to allow that.", request.TargetImage?.Spec ?? request.TargetPath);
        }

        var client = pool.Client;
        // Where the data is: the recorded base, or the image the listing found the backup on.
        var baseImage = pool.Image(backup.Container);
        if (client.ImageSize(baseImage) is null)
        {
            throw new BackupException(BackupErrorKind.InvalidData, "BackupDataMissing",
                $"The base image '{baseImage}' of backup {backup.Id} is gone from {pool.Repository}; the backup cannot be restored.", backup.Id);
        }

        var snapshotThere = client.Snapshots(baseImage).Any(s => s.Name == backup.Prefix);
        if (!snapshotThere && plan.NewerBackupOnBase)
        {
            throw new BackupException(BackupErrorKind.InvalidData, "RestorePointMissing",
                $"The snapshot '{backup.Prefix}' of backup {backup.Id} is gone from base '{baseImage}', and the base's current content belongs to a later backup; this backup cannot be restored.", backup.Id);
        }

        var decision = plan.Decision;
        long written = 0, zeros = 0;
        if (request.TargetImage is { } target && !plan.TargetExists)
        {
            client.CreateImage(target, backup.VolumeSize);
        }

        if (decision.Path == RestorePath.Differential)
        {
            try
            {
                // One handle for the copy and the resize back to the requested size (the copy
                // leaves the target at the base's size, with the end snapshot, as import-diff).
                using var to = client.Open(request.TargetImage!, readOnly: false);
                written = client.CopyDiff(baseImage, decision.RestorePoint!, null, to, progress, OperationPhase.Restoring, cancellationToken).DataBytes;
                if (to.Stat().Size != plan.TargetSize)
                {
                    to.Resize(plan.TargetSize);
                }
            }
            catch (BackupException ex) when (ex.ErrorId == "RbdDiffFailed")
            {
                decision = RbdRestoreEligibility.AfterDifferentialFailure(decision, ex.Message);
            }
        }

        if (decision.Path == RestorePath.Full)
        {
            (written, zeros) = FullCopy(client, baseImage, snapshotThere ? backup.Prefix : null, request, plan, progress, cancellationToken);
        }

        return new RestoreResult
        {
            Backup = backup,
            TargetPath = request.TargetImage?.Spec ?? Path.GetFullPath(request.TargetPath!),
            Decision = decision,
            ChainLength = 1, // a pool backup is self-contained at restore: its snapshot holds the whole volume
            VolumeSize = backup.VolumeSize,
            BytesWritten = written,
            ZeroBytes = zeros,
            BlocksVerified = 0,
            TargetWasNew = !plan.TargetHoldsData,
            Duration = clock.Elapsed,
        };
    }

    /// <summary>
    /// Copies every extent of base@snapshot (the newest backup snapshot, i.e. HEAD's content, when
    /// this backup's snapshot is gone and the base holds nothing newer): data where it exists;
    /// zeros elsewhere on a target that held data, nothing on an empty one (which stays thin).
    /// </summary>
    private static (long Written, long Zeros) FullCopy(RbdClient client, RbdImageRef baseImage, string? restorePoint, RbdRestoreRequest request, RbdRestorePlan plan, IProgress<OperationProgress>? progress, CancellationToken cancellationToken)
    {
        using var from = client.Open(baseImage, restorePoint);
        var (size, objectSize) = from.Stat();
        var exact = plan.TargetHoldsData;
        var data = from.Diff(null, wholeObject: false, 0, size, cancellationToken);
        ExtentCopyStats stats;
        if (request.TargetImage is { } image)
        {
            using var to = client.Open(image, readOnly: false);
            if (to.Stat().Size != plan.TargetSize)
            {
                to.Resize(plan.TargetSize);
            }

            var extents = exact ? WithGaps(data, plan.TargetSize) : data;
            stats = RbdExtentCopy.Run(from, extents, objectSize, new RbdImageSink(to), sinkIsEmpty: !exact, Throttle(progress, extents), cancellationToken);
            to.Flush();
        }
        else
        {
            using var target = RestoreTarget.Open(request.TargetPath!, size, request.Overwrite);
            var extents = exact ? WithGaps(data, size) : data;
            stats = RbdExtentCopy.Run(from, extents, objectSize, new RestoreTargetSink(target), sinkIsEmpty: !exact, Throttle(progress, extents), cancellationToken);
            target.Commit();
        }

        return (stats.DataBytes, stats.ZeroedBytes);
    }

    private static ProgressThrottle Throttle(IProgress<OperationProgress>? progress, List<RbdExtent> extents) =>
        new(progress, OperationPhase.Restoring, extents.Sum(e => e.Length), "full copy");

    /// <summary>The data extents plus zero extents for every gap up to <paramref name="end"/>.</summary>
    internal static List<RbdExtent> WithGaps(IReadOnlyList<RbdExtent> data, long end)
    {
        var all = new List<RbdExtent>(data.Count * 2 + 1);
        long next = 0;
        foreach (var extent in data)
        {
            if (extent.Offset > next)
            {
                all.Add(new RbdExtent(next, extent.Offset - next, false));
            }

            all.Add(extent);
            next = extent.Offset + extent.Length;
        }

        if (end > next)
        {
            all.Add(new RbdExtent(next, end - next, false));
        }

        return all;
    }
}
