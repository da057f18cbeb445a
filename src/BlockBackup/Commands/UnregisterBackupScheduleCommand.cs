using System.Management.Automation;
using BlockBackup.Engine.Scheduling;

namespace BlockBackup.Commands;

/// <summary>Removes the scheduler entry Register-BackupSchedule installed (the policies stay).</summary>
[Cmdlet(VerbsLifecycle.Unregister, "BackupSchedule", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(ScheduleRegistration))]
public sealed class UnregisterBackupScheduleCommand : ScheduleCmdlet
{
    /// <summary>Emit the registration state afterwards.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord() => ForItem(() =>
    {
        var installer = Installer();
        if (!ShouldProcess($"{installer.Kind} entry '{ScheduleEntry.Name}'", "Remove"))
        {
            return;
        }

        var registration = installer.Unregister(WriteVerbose);
        if (PassThru)
        {
            WriteObject(registration);
        }
    });
}
