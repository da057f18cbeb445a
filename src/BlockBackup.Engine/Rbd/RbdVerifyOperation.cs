using System.Diagnostics;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Operations;

namespace BlockBackup.Engine.Rbd;

/// <summary>
/// Verifies a pool backup the only way its format allows (Cinder's Ceph driver keeps no
/// checksums): its base image and snapshot exist, and the whole snapshot reads back through
/// export-diff as a well-formed stream covering exactly the volume.
/// </summary>
public static class RbdVerifyOperation
{
    public static VerificationResult Run(RbdBackupPool pool, Guid backupId, CancellationToken cancellationToken = default)
    {
        var clock = Stopwatch.StartNew();
        var backup = pool.Get(backupId);
        var issues = new List<VerificationIssue>();
        var baseImage = pool.Image(backup.Container);
        long bytes = 0;
        if (!pool.Client.Snapshots(baseImage).Any(s => s.Name == backup.Prefix))
        {
            issues.Add(new VerificationIssue(backupId, backup.Prefix, null, VerificationProblem.ObjectMissing, $"snapshot '{backup.Prefix}' is missing from base image '{baseImage}'"));
        }
        else
        {
            using var export = pool.Client.Tool.StartExportDiff(baseImage, backup.Prefix, null, wholeObject: false);
            using var registration = cancellationToken.Register(() => { try { export.Kill(true); } catch (InvalidOperationException) { } });
            try
            {
                var reader = new RbdDiffReader(export.StandardOutput.BaseStream, baseImage.SnapSpec(backup.Prefix));
                if (reader.ImageSize != backup.VolumeSize)
                {
                    issues.Add(new VerificationIssue(backupId, backup.Prefix, null, VerificationProblem.HashListInvalid, $"the snapshot is {reader.ImageSize} bytes, the backup {backup.VolumeSize}"));
                }

                // Next() reads through each record's data, so every byte is read and the stream checked.
                while (reader.Next() is { } record)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    bytes += record.Kind == RbdDiffRecordKind.Data ? record.Length : 0;
                }

                RbdTool.Finish(export, $"export-diff {baseImage.SnapSpec(backup.Prefix)}");
            }
            catch (BackupException ex) when (!cancellationToken.IsCancellationRequested)
            {
                issues.Add(new VerificationIssue(backupId, backup.Prefix, null, VerificationProblem.DecompressionFailed, ex.Message));
            }
        }

        cancellationToken.ThrowIfCancellationRequested();
        return new VerificationResult
        {
            Backup = backup,
            Verified = [backupId],
            ObjectsChecked = 1,
            BytesChecked = bytes,
            Issues = issues,
            Duration = clock.Elapsed,
        };
    }
}
