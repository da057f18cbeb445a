using System.Management.Automation;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Operations;
using BlockBackup.Engine.Rbd;
using BlockBackup.Engine.Repository;

namespace BlockBackup.Commands;

/// <summary>
/// Restores a backup (through its chain) to a file or block device. Restoring into a new file
/// asks nothing; a target that already holds data is refused unless -Force is given.
/// </summary>
[Cmdlet(VerbsData.Restore, "VolumeBackup", DefaultParameterSetName = ToFileSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(RestoreResult))]
public sealed class RestoreVolumeBackupCommand : BackupItemCmdlet
{
    private const string ToFileSet = "ToFile";
    private const string ToRbdSet = "ToRbd";

    /// <summary>A file (created when missing) or a block device.</summary>
    [Parameter(Mandatory = true, Position = 2, ParameterSetName = ToFileSet)]
    [Alias("Target")]
    [ValidateNotNullOrEmpty]
    public string TargetPath { get; set; } = null!;

    /// <summary>An RBD image (pool/image) to restore a backup of an RBD backup pool into; created with the backup's size when missing.</summary>
    [Parameter(Mandatory = true, ParameterSetName = ToRbdSet)]
    [ValidateNotNullOrEmpty]
    public string TargetRbdImage { get; set; } = null!;

    /// <summary>Overwrite a target that already holds data (it is then restored exactly).</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>The backup each target of this pipeline received (a second backup for one target would overwrite the first).</summary>
    private readonly Dictionary<string, Guid> _restoredTo = new(OperatingSystem.IsWindows() ? StringComparer.OrdinalIgnoreCase : StringComparer.Ordinal);

    protected override void ProcessRecord() => ForItem(() =>
    {
        // Several backups piped to one -TargetPath (Get-VolumeBackup -Latest of a repository
        // with several volumes, say): only the first is restored there; with -Force the next
        // would silently replace it with another volume.
        var targetName = ParameterSetName == ToRbdSet ? ParseImage(TargetRbdImage).Spec : ResolvePath(TargetPath);
        if (_restoredTo.TryGetValue(targetName, out var earlier) && earlier != BackupId)
        {
            throw new BackupException(BackupErrorKind.InvalidOperation, "TargetAlreadyRestored",
                $"Backup {BackupId} was not restored: '{targetName}' already received backup {earlier} in this pipeline, and a target holds one volume. Give each backup its own target: … | ForEach-Object {{ $_ | Restore-VolumeBackup -TargetPath \"./$($_.Id).img\" }}.", BackupId);
        }

        var repository = OpenRepository(Repository, usesCeph: ParameterSetName == ToRbdSet);
        switch (repository)
        {
            case IChunkedRepository files when ParameterSetName == ToFileSet:
                RestoreFromFiles(files);
                break;
            case RbdBackupPool pool:
                RestoreFromPool(pool);
                break;
            default:
                throw new BackupException(BackupErrorKind.NotSupported, "RbdTargetNeedsRbdRepository",
                    "-TargetRbdImage restores backups of an RBD backup pool (-Repository rbd:<pool>); restore a file-repository backup to a file or block device with -TargetPath.", TargetRbdImage);
        }
    });

    private void RestoreFromFiles(IChunkedRepository repository)
    {
        var target = ResolvePath(TargetPath);
        var preview = RestoreOperation.Preview(repository, BackupId, target);
        var state = !preview.TargetExists ? "new file"
            : !preview.TargetHoldsData ? "empty target"
            : Force ? $"{(preview.TargetIsBlockDevice ? "block device" : "file")} that holds data, overwriting it (-Force)"
            : $"{(preview.TargetIsBlockDevice ? "block device" : "file")} that holds data: refused without -Force";
        if (!ShouldProcess(target, $"Restore backup {BackupId} ({ViewText.Count(preview.Chain.Length, "backup")} in the chain; {preview.Decision}) to the {state}"))
        {
            return;
        }

        var request = new RestoreRequest { BackupId = BackupId, TargetPath = target, Overwrite = Force };
        var result = RunWithProgress($"Restoring {BackupId} to {target}", (progress, token) => RestoreOperation.Run(repository, request, progress, token));
        _restoredTo[target] = BackupId;
        WriteVerbose($"{result.Decision.ToString().TrimEnd('.')}. Wrote {Units.Size(result.BytesWritten)}, {Units.Size(result.ZeroBytes)} zero, verified {result.BlocksVerified} blocks in {result.Duration.TotalSeconds:F1} s.");
        WriteObject(result);
    }

    /// <summary>Cinder's Ceph restore: differential when its eligibility rules allow, else a full copy.</summary>
    private void RestoreFromPool(RbdBackupPool pool)
    {
        var request = new RbdRestoreRequest
        {
            BackupId = BackupId,
            TargetImage = ParameterSetName == ToRbdSet ? ParseImage(TargetRbdImage) : null,
            TargetPath = ParameterSetName == ToFileSet ? ResolvePath(TargetPath) : null,
            Overwrite = Force,
        };
        var plan = RbdRestoreOperation.Plan(pool, request);
        var target = request.TargetImage?.Spec ?? request.TargetPath!;
        var state = plan.TargetHoldsData ? (Force ? "; the target holds data and is overwritten (-Force)" : "; the target holds data: refused without -Force") : string.Empty;
        if (!ShouldProcess(target, $"Restore backup {BackupId} from {pool.Repository} ({plan.Decision}){state}"))
        {
            return;
        }

        var result = RunWithProgress($"Restoring {BackupId} to {target}", (progress, token) => RbdRestoreOperation.Run(pool, request, progress, token));
        _restoredTo[target] = BackupId;
        WriteVerbose($"{result.Decision.ToString().TrimEnd('.')}. Wrote {Units.Size(result.BytesWritten)} in {result.Duration.TotalSeconds:F1} s.");
        WriteObject(result);
    }
}
