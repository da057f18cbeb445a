using BlockBackup.Engine.Operations;

namespace BlockBackup.Engine.Rbd;

/// <summary>What the differential-restore decision looks at, gathered before anything is written.</summary>
public sealed record RbdRestoreFacts(
    string BaseImage,
    bool BaseExists,
    string? RestorePoint,
    bool TargetIsRbd,
    bool TargetIsSourceVolume,
    bool TargetHasExtents,
    long TargetAllocatedBytes = 0);

/// <summary>
/// Cinder's differential-restore eligibility (cinder/backup/drivers/ceph.py _diff_restore_allowed),
/// checked in Cinder's order; the first rule that fails decides a full copy.
/// </summary>
public static class RbdRestoreEligibility
{
    public const string BaseImageMissing = "BaseImageMissing";
    public const string NoRestorePoint = "NoRestorePoint";
    public const string TargetNotRbd = "TargetNotRbd";
    public const string TargetIsSourceVolume = "TargetIsSourceVolume";
    public const string TargetHasExtents = "TargetHasExtents";
    public const string DifferentialAllowed = "DifferentialAllowed";
    public const string DifferentialFailed = "DifferentialFailed";

    public static RestoreDecision Decide(RbdRestoreFacts f)
    {
        if (!f.BaseExists)
        {
            return new RestoreDecision(RestorePath.Full, BaseImageMissing,
                $"The backup's base image '{f.BaseImage}' does not exist in the backup pool; no differential restore is possible.");
        }

        if (f.RestorePoint is null)
        {
            return new RestoreDecision(RestorePath.Full, NoRestorePoint,
                $"No restore point (backup snapshot) of this backup was found on base image '{f.BaseImage}' although the base exists; forcing a full copy.");
        }

        if (!f.TargetIsRbd)
        {
            return new RestoreDecision(RestorePath.Full, TargetNotRbd,
                "The destination is not an RBD image; a full copy from the restore point is made.", f.RestorePoint);
        }

        if (f.TargetIsSourceVolume)
        {
            return new RestoreDecision(RestorePath.Full, TargetIsSourceVolume,
                "The destination is the backup's own source volume; forcing a full copy (as Cinder does).", f.RestorePoint);
        }

        if (f.TargetHasExtents)
        {
            return new RestoreDecision(RestorePath.Full, TargetHasExtents,
                $"The destination image has allocated extents ({f.TargetAllocatedBytes} bytes); forcing a full copy.", f.RestorePoint);
        }

        return new RestoreDecision(RestorePath.Differential, DifferentialAllowed,
            $"The destination is an empty RBD image and restore point '{f.RestorePoint}' exists on base '{f.BaseImage}': export-diff | import-diff.", f.RestorePoint);
    }

    /// <summary>The decision after a differential transfer failed: Cinder then falls back to a full copy.</summary>
    public static RestoreDecision AfterDifferentialFailure(RestoreDecision differential, string error) =>
        new(RestorePath.Full, DifferentialFailed, $"The differential transfer failed ({error}); fell back to a full copy.", differential.RestorePoint);
}
