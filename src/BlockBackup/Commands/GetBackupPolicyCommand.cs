using System.Management.Automation;
using BlockBackup.Engine.Policies;

namespace BlockBackup.Commands;

/// <summary>Gets the backup policies of the node's policy store (each read and validated).</summary>
[Cmdlet(VerbsCommon.Get, "BackupPolicy")]
[OutputType(typeof(BackupPolicy))]
public sealed class GetBackupPolicyCommand : PolicyCmdlet
{
    /// <summary>Policy names; wildcards allowed (default: all).</summary>
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(PolicyNameCompleter))]
    public string[] Name { get; set; } = ["*"];

    protected override void ProcessRecord()
    {
        var store = Store();
        foreach (var name in Name.SelectMany(n => Matching(store, n)).Distinct(StringComparer.OrdinalIgnoreCase))
        {
            ForItem(() => WriteObject(store.Get(name)));
        }
    }
}
