using System.Management.Automation;
using BlockBackup.Engine.Scheduling;

namespace BlockBackup.Commands;

/// <summary>
/// Installs the one operating-system entry that runs `Invoke-BackupPolicy -Due` every few
/// minutes (systemd service + timer, a cron entry, or a Windows Scheduled Task). Idempotent:
/// registering again rewrites nothing that is already current.
/// </summary>
[Cmdlet(VerbsLifecycle.Register, "BackupSchedule", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(ScheduleRegistration))]
public sealed class RegisterBackupScheduleCommand : ScheduleEntryCmdlet
{
    /// <summary>Emit the registration.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord() => ForItem(() =>
    {
        var installer = Installer();
        var log = installer.Kind == ScheduleKind.Cron ? CronLogFile() : null;
        var entry = Entry(EveryMinutes, log);
        entry.Validate();
        if (!ShouldProcess($"{installer.Kind} entry '{ScheduleEntry.Name}'", $"Run '{ScheduleEntry.Script}' every {ViewText.Count(EveryMinutes, "minute")}"))
        {
            return;
        }

        if (log is not null)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(log)!);
        }

        var registration = installer.Register(entry, WriteVerbose);
        if (PassThru)
        {
            WriteObject(registration);
        }
    });
}
