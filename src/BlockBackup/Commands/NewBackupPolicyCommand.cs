using System.Management.Automation;
using BlockBackup.Engine.Policies;

namespace BlockBackup.Commands;

/// <summary>Creates a named backup policy in the node's policy store.</summary>
[Cmdlet(VerbsCommon.New, "BackupPolicy", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(BackupPolicy))]
public sealed class NewBackupPolicyCommand : PolicySettingsCmdlet
{
    [Parameter(Mandatory = true, Position = 0)]
    [ValidateNotNullOrEmpty]
    public string Name { get; set; } = null!;

    /// <summary>Where the backups go: a directory (local or NFS) or rbd:&lt;pool&gt;.</summary>
    [Parameter(Mandatory = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(RepositoryCompleter))]
    public string Repository { get; set; } = null!;

    protected override void ProcessRecord() => ForItem(() =>
    {
        var store = Store();
        var policy = Apply(new BackupPolicy { Name = Name, Repository = StoredLocation(Repository), Schedule = Schedule ?? string.Empty });
        policy.Validate();
        WarnAboutMissingVolumes(policy);
        if (ShouldProcess($"{store.PolicyPath(Name)}", $"Create backup policy '{Name}'"))
        {
            store.Save(policy, replace: false);
            WriteObject(policy);
        }
    });
}
