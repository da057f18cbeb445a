using System.Management.Automation;
using BlockBackup.Engine.Scheduling;

namespace BlockBackup.Commands;

/// <summary>Whether the scheduler entry is registered, and whether it is what Register-BackupSchedule would write now.</summary>
[Cmdlet(VerbsCommon.Get, "BackupSchedule")]
[OutputType(typeof(ScheduleRegistration))]
public sealed class GetBackupScheduleCommand : ScheduleEntryCmdlet
{
    protected override void ProcessRecord() => ForItem(() =>
    {
        var installer = Installer();
        WriteObject(installer.Get(Entry(EveryMinutes, installer.Kind == ScheduleKind.Cron ? CronLogFile() : null)));
    });
}
