using System.Management.Automation;

namespace BlockBackup.Commands;

/// <summary>Removes a backup policy and its run history; its backups stay in the repository.</summary>
[Cmdlet(VerbsCommon.Remove, "BackupPolicy", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(Engine.Policies.BackupPolicy))]
public sealed class RemoveBackupPolicyCommand : PolicyCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(PolicyNameCompleter))]
    public string Name { get; set; } = null!;

    /// <summary>Emit the removed policy.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord() => ForItem(() =>
    {
        var store = Store();
        // A name that is not a policy name never becomes a path (and is not a damaged policy to remove anyway).
        Engine.Policies.PolicyStore.CheckedName(Name);
        // Read (and so validated) first: a damaged file, or one another user could change, is removed too
        // (the file only: its folder was checked, so removing a name from it is safe), but a missing one is an error.
        Engine.Policies.BackupPolicy? policy = null;
        try
        {
            policy = store.Get(Name);
        }
        catch (Engine.Errors.BackupException ex) when (ex.ErrorId == "InvalidBackupPolicy" || (ex.ErrorId == Engine.Configuration.ConfigurationFiles.NotTrustedId && Equals(ex.Target, store.PolicyPath(Name))))
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
