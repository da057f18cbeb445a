using System.Management.Automation;
using BlockBackup.Engine.Scheduling;

namespace BlockBackup.Commands;

/// <summary>Whether the scheduler entry is registered, and whether it is what Register-BackupSchedule would write now.</summary>
[Cmdlet(VerbsCommon.Get, "BackupSchedule")]
[OutputType(typeof(ScheduleRegistration))]
public sealed class GetBackupScheduleCommand : ScheduleCmdlet
{
    /// <summary>The interval to compare the registered entry with (default 5).</summary>
    [Parameter]
    [ValidateRange(1, 60)]
    public int EveryMinutes { get; set; } = 5;

    /// <summary>For cron: the log file to compare the registered entry with.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? LogFile { get; set; }

    protected override void ProcessRecord() => ForItem(() =>
    {
        var installer = Installer();
        WriteObject(installer.Get(Entry(EveryMinutes, LogFile is null ? null : ResolvePath(LogFile))));
    });
}
