using System.Management.Automation;
using BlockBackup.Engine.Scheduling;

namespace BlockBackup.Commands;

/// <summary>Base of the schedule cmdlets: which scheduler, and where its files go.</summary>
public abstract class ScheduleCmdlet : EngineCmdlet
{
    /// <summary>The scheduler: Systemd where systemd runs, Cron elsewhere on Unix, ScheduledTask on Windows (the default).</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    public ScheduleKind? Kind { get; set; }

    /// <summary>Write the entry's files here instead of the system's place (a unit directory for systemd; for cron a cron.d-style file, or a directory that then holds it as blockbackup); the scheduler is then not told.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string? Destination { get; set; }

    protected ScheduleInstaller Installer() => new(Kind ?? ScheduleInstaller.DefaultKind(), Destination is null ? null : ResolvePath(Destination));

    /// <summary>The entry this module would register: this session's pwsh and this module's manifest.</summary>
    protected ScheduleEntry Entry(int everyMinutes, string? logFile)
    {
        var home = (string)SessionState.PSVariable.GetValue("PSHOME");
        return new ScheduleEntry
        {
            PwshPath = Path.Combine(home, OperatingSystem.IsWindows() ? "pwsh.exe" : "pwsh"),
            ModuleManifest = Path.Combine(MyInvocation.MyCommand.Module.ModuleBase, "BlockBackup.psd1"),
            EveryMinutes = everyMinutes,
            ConfigDirectory = Environment.GetEnvironmentVariable("BLOCKBACKUP_CONFIG_DIR") is { Length: > 0 } dir ? Path.GetFullPath(dir) : null,
            LogFile = logFile,
        };
    }
}

/// <summary>Schedule cmdlets that describe an entry: how often it runs, and (cron) where it logs.</summary>
public abstract class ScheduleEntryCmdlet : ScheduleCmdlet
{
    /// <summary>Minutes between checks for due policies: 1 to 60, dividing an hour (default 5).</summary>
    [Parameter]
    [ValidateRange(1, 60)]
    public int EveryMinutes { get; set; } = 5;

    /// <summary>For cron: the file its runs append to (default /var/log/blockbackup.log for root, ~/.local/state/blockbackup/blockbackup.log otherwise). systemd logs to the journal, Windows to the task history.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? LogFile { get; set; }

    /// <summary>The cron log file: -LogFile, or the default for this user.</summary>
    protected string CronLogFile() => ResolvePath(LogFile ?? (Environment.UserName == "root"
        ? "/var/log/blockbackup.log"
        : Path.Combine(Environment.GetEnvironmentVariable("XDG_STATE_HOME") ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".local", "state"), "blockbackup", "blockbackup.log")));
}
