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
public sealed class RegisterBackupScheduleCommand : ScheduleCmdlet
{
    /// <summary>Minutes between checks for due policies: 1 to 60, dividing an hour (default 5).</summary>
    [Parameter]
    [ValidateRange(1, 60)]
    public int EveryMinutes { get; set; } = 5;

    /// <summary>For cron: the file its runs append to (default /var/log/blockbackup.log for root, ~/.local/state/blockbackup/blockbackup.log otherwise). systemd logs to the journal, Windows to the task history.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? LogFile { get; set; }

    /// <summary>Emit the registration.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord() => ForItem(() =>
    {
        var installer = Installer();
        var log = installer.Kind == ScheduleKind.Cron ? ResolvePath(LogFile ?? DefaultCronLog()) : null;
        var entry = Entry(EveryMinutes, log);
        entry.Validate();
        if (!ShouldProcess($"{installer.Kind} entry '{ScheduleEntry.Name}'", $"Run '{entry.Script}' every {EveryMinutes} minute(s)"))
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

    private static string DefaultCronLog() => Environment.UserName == "root"
        ? "/var/log/blockbackup.log"
        : Path.Combine(Environment.GetEnvironmentVariable("XDG_STATE_HOME") ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".local", "state"), "blockbackup", "blockbackup.log");
}
