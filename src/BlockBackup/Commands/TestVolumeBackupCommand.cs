using System.Management.Automation;
using BlockBackup.Engine.Operations;

namespace BlockBackup.Commands;

/// <summary>Reads every object of a backup (or its chain) and checks lengths, MD5s and block hashes.</summary>
[Cmdlet(VerbsDiagnostic.Test, "VolumeBackup")]
[OutputType(typeof(VerificationResult), typeof(bool))]
public sealed class TestVolumeBackupCommand : BackupItemCmdlet
{
    /// <summary>Verify every backup the restore needs, and that the chain adds up to this backup.</summary>
    [Parameter]
    [Alias("Chain")]
    public SwitchParameter IncludeChain { get; set; }

    /// <summary>Return only $true or $false.</summary>
    [Parameter]
    public SwitchParameter Quiet { get; set; }

    protected override void ProcessRecord()
    {
        if (IsRbd(Repository))
        {
            var pool = OpenPool(Repository);
            ForItem(() =>
            {
                var backups = IncludeChain ? Engine.Rbd.RbdVerifyOperation.Chain(pool, BackupId).Backups.Select(b => b.Id) : [BackupId];
                foreach (var id in backups)
                {
                    var result = RunWithProgress($"Verifying {id}", (_, token) => Engine.Rbd.RbdVerifyOperation.Run(pool, id, token));
                    if (id == BackupId || !result.IsValid)
                    {
                        Emit(result);
                    }
                }
            });
            return;
        }

        var repository = OpenRepository(Repository);
        ForItem(() =>
        {
            var result = RunWithProgress($"Verifying {BackupId}", (progress, token) => VerifyOperation.Run(repository, BackupId, IncludeChain, progress, token));
            Emit(result);
        });
    }

    private void Emit(VerificationResult result)
    {
        foreach (var issue in result.Issues)
        {
            WriteVerbose(issue.ToString());
        }

        WriteObject(Quiet ? result.IsValid : result);
    }
}
