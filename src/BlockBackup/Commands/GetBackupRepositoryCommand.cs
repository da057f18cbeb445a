using System.Management.Automation;
using BlockBackup.Engine.Configuration;

namespace BlockBackup.Commands;

/// <summary>Gets the repositories registered on this node (each read and validated; never a secret).</summary>
[Cmdlet(VerbsCommon.Get, "BackupRepository")]
[OutputType(typeof(RegisteredRepository))]
public sealed class GetBackupRepositoryCommand : RegisteredRepositoryCmdlet
{
    /// <summary>Registered names; wildcards allowed (default: all).</summary>
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(RegisteredRepositoryNameCompleter))]
    public string[] Name { get; set; } = ["*"];

    protected override void ProcessRecord()
    {
        var registry = Registry();
        foreach (var name in Name.SelectMany(n => Matching(registry, n)).Distinct(StringComparer.OrdinalIgnoreCase))
        {
            ForItem(() => WriteObject(registry.Get(name)));
        }
    }
}
