using System.Management.Automation;
using BlockBackup.Engine;

namespace BlockBackup.Commands;

/// <summary>The chain a restore of a backup needs: the full backup first, then each incremental.</summary>
[Cmdlet(VerbsCommon.Get, "BackupChain")]
[OutputType(typeof(BackupChain))]
public sealed class GetBackupChainCommand : RepositoryCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string Repository { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 1, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("Id")]
    [ArgumentCompleter(typeof(BackupIdCompleter))]
    public Guid BackupId { get; set; }

    protected override void ProcessRecord()
    {
        if (IsRbd(Repository))
        {
            var pool = OpenPool(Repository);
            ForItem(() => WriteObject(Engine.Rbd.RbdVerifyOperation.Chain(pool, BackupId)));
            return;
        }

        var repository = OpenRepository(Repository);
        ForItem(() => WriteObject(repository.GetChain(BackupId)));
    }
}
