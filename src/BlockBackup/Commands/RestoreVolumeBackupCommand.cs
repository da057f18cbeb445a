using System.Management.Automation;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Operations;

namespace BlockBackup.Commands;

/// <summary>
/// Restores a backup (through its chain) to a file or block device. Restoring into a new file
/// asks nothing; a target that already holds data is refused unless -Force is given.
/// </summary>
[Cmdlet(VerbsData.Restore, "VolumeBackup", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(RestoreResult))]
public sealed class RestoreVolumeBackupCommand : EngineCmdlet
{
    [Parameter(Mandatory = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string Repository { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("Id")]
    [ArgumentCompleter(typeof(BackupIdCompleter))]
    public Guid BackupId { get; set; }

    /// <summary>A file (created when missing) or a block device.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [Alias("Target")]
    [ValidateNotNullOrEmpty]
    public string TargetPath { get; set; } = null!;

    /// <summary>Overwrite a target that already holds data (it is then restored exactly).</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    protected override void ProcessRecord()
    {
        var repository = OpenRepository(Repository);
        var target = ResolvePath(TargetPath);
        ForItem(() =>
        {
            var preview = RestoreOperation.Preview(repository, BackupId, target);
            var state = !preview.TargetExists ? "new file" : preview.TargetHoldsData ? (preview.TargetIsBlockDevice ? "block device, overwritten" : "holds data, overwritten") : "empty";
            if (!ShouldProcess(target, $"Restore backup {BackupId} ({preview.Chain.Length} backup(s) in the chain; {preview.Decision}) to the {state} target"))
            {
                return;
            }

            if (preview.TargetHoldsData && !Force)
            {
                throw new BackupException(BackupErrorKind.InvalidOperation, "TargetHasData",
                    $"The target '{target}' already holds data{(preview.TargetIsBlockDevice ? " (it is a block device)" : string.Empty)}. Restoring would overwrite it; use -Force to allow that.", target);
            }

            var request = new RestoreRequest { BackupId = BackupId, TargetPath = target, Overwrite = Force };
            var result = RunWithProgress($"Restoring {BackupId} to {target}", (progress, token) => RestoreOperation.Run(repository, request, progress, token));
            WriteVerbose($"{result.Decision}. Wrote {Units.Size(result.BytesWritten)}, {Units.Size(result.ZeroBytes)} zero, verified {result.BlocksVerified} blocks in {result.Duration.TotalSeconds:F1} s.");
            WriteObject(result);
        });
    }
}
