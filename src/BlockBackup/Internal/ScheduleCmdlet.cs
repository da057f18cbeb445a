using System.Management.Automation;
using BlockBackup.Engine.Scheduling;

namespace BlockBackup.Commands;

/// <summary>Base of the schedule cmdlets: which scheduler, and where its files go.</summary>
public abstract class ScheduleCmdlet : EngineCmdlet
{
    /// <summary>The scheduler: Systemd where systemd runs, Cron elsewhere on Unix, ScheduledTask on Windows (the default).</summary>
    [Parameter]
    public ScheduleKind? Kind { get; set; }

    /// <summary>Write the entry's files here instead of the system's place (a unit directory for systemd, a cron.d-style file for cron); the scheduler is then not told.</summary>
    [Parameter]
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
