using System.Management.Automation;

namespace BlockBackup.Commands;

/// <summary>Removes a backup policy and its run history; its backups stay in the repository.</summary>
[Cmdlet(VerbsCommon.Remove, "BackupPolicy", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(Engine.Policies.BackupPolicy))]
public sealed class RemoveBackupPolicyCommand : PolicyCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string Name { get; set; } = null!;

    /// <summary>Emit the removed policy.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord() => ForItem(() =>
    {
        var store = Store();
        // Read (and so validated) first: a damaged file is removed too, but a missing one is an error.
        Engine.Policies.BackupPolicy? policy = null;
        try
        {
            policy = store.Get(Name);
        }
        catch (Engine.Errors.BackupException ex) when (ex.ErrorId == "InvalidBackupPolicy")
        {
            WriteWarning($"{ex.Message} It is removed anyway.");
        }

        if (ShouldProcess(store.PolicyPath(Name), $"Remove backup policy '{Name}' (its backups stay)"))
        {
            store.Remove(Name);
            if (PassThru && policy is not null)
            {
                WriteObject(policy);
            }
        }
    });
}
