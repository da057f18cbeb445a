using System.Management.Automation;
using BlockBackup.Engine.Policies;

namespace BlockBackup.Commands;

/// <summary>Changes the given settings of a backup policy; the others stay as they are.</summary>
[Cmdlet(VerbsCommon.Set, "BackupPolicy", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(BackupPolicy))]
public sealed class SetBackupPolicyCommand : PolicySettingsCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(PolicyNameCompleter))]
    public string Name { get; set; } = null!;

    /// <summary>Where the backups go: a directory (local or NFS) or rbd:&lt;pool&gt;.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(RepositoryCompleter))]
    public string? Repository { get; set; }

    /// <summary>Emit the changed policy.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord() => ForItem(() =>
    {
        var store = Store();
        var current = store.Get(Name);
        var changed = Apply(current) with { Repository = Repository is null ? current.Repository : StoredLocation(Repository) };
        changed.Validate();
        if (MyInvocation.BoundParameters.ContainsKey(nameof(Path)))
        {
            WarnAboutMissingVolumes(changed);
        }

        if (ShouldProcess(store.PolicyPath(Name), $"Change backup policy '{Name}'"))
        {
            store.Save(changed, replace: true);
            if (PassThru)
            {
                WriteObject(changed);
            }
        }
    });
}
