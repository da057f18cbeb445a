using System.Management.Automation;
using BlockBackup.Engine.Nbd;

namespace BlockBackup.Commands;

/// <summary>
/// The running NBD exports started by Mount-VolumeBackup (from any session of this user's work
/// directory). A mount whose server was killed is cleaned up here: its state, socket and overlay.
/// </summary>
[Cmdlet(VerbsCommon.Get, "VolumeBackupMount")]
[OutputType(typeof(VolumeBackupMount))]
public sealed class GetVolumeBackupMountCommand : EngineCmdlet
{
    /// <summary>Only exports whose name matches (wildcards allowed).</summary>
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ValidateNotNullOrEmpty]
    public string? ExportName { get; set; }

    protected override void ProcessRecord() => ForItem(() =>
    {
        var pattern = ExportName is null ? null : new WildcardPattern(ExportName, WildcardOptions.IgnoreCase);
        var live = MountRegistry.Live(out var removed);
        foreach (var mount in live.Where(m => pattern?.IsMatch(m.ExportName) != false))
        {
            WriteObject(mount);
        }

        foreach (var dead in removed)
        {
            WriteVerbose($"The server of export '{dead.ExportName}' (process {dead.ProcessId}) is gone; its state, socket{(dead.OverlayPath is null ? string.Empty : " and overlay")} were removed.");
        }
    });
}
