using System.Diagnostics;
using System.Management.Automation;
using System.Runtime.InteropServices;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Nbd;

namespace BlockBackup.Commands;

/// <summary>
/// Stops an NBD export started by Mount-VolumeBackup: SIGTERM (its clients are disconnected, its
/// read lease released), SIGKILL if it has not ended within the limit, then its socket, state and
/// (unless -KeepOverlay) overlay are removed.
/// </summary>
[Cmdlet(VerbsData.Dismount, "VolumeBackup", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(VolumeBackupMount))]
public sealed class DismountVolumeBackupCommand : EngineCmdlet
{
    private static readonly TimeSpan StopLimit = TimeSpan.FromSeconds(30);

    /// <summary>The export to stop (a mount object pipes in by this property).</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidatePattern("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    public string ExportName { get; set; } = null!;

    /// <summary>Keep the overlay file (and its .map) of a writable mount.</summary>
    [Parameter]
    public SwitchParameter KeepOverlay { get; set; }

    /// <summary>Return the stopped mount.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord() => ForItem(() =>
    {
        var mount = MountRegistry.Read(ExportName)
            ?? throw new BackupException(BackupErrorKind.NotFound, "MountNotFound", $"No export named '{ExportName}' is mounted; Get-VolumeBackupMount lists the running ones.", ExportName);
        if (!ShouldProcess($"{mount.Uri} (process {mount.ProcessId})", "Stop the NBD export"))
        {
            return;
        }

        if (MountRegistry.IsRunning(mount))
        {
            using var process = Process.GetProcessById(mount.ProcessId);
            _ = Kill(mount.ProcessId, 15); // SIGTERM: the server disconnects its clients and lets go of its lease
            if (!process.WaitForExit(StopLimit))
            {
                WriteWarning($"The server of '{ExportName}' (process {mount.ProcessId}) did not stop within {StopLimit.TotalSeconds} s of SIGTERM; killed.");
                process.Kill(entireProcessTree: true);
                process.WaitForExit();
            }
        }

        MountRegistry.Clean(mount, KeepOverlay);
        if (KeepOverlay && mount.OverlayPath is { } overlay)
        {
            WriteVerbose($"The overlay was kept: '{overlay}' (which 4 KiB grains it holds: '{overlay}.map').");
        }

        if (PassThru)
        {
            WriteObject(mount);
        }
    });

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);
}
