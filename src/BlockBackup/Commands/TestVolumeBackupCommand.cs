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

    protected override void ProcessRecord() => ForItem(() =>
    {
        var repository = OpenRepository(Repository);
        Emit(RunWithProgress($"Verifying {BackupId}", (progress, token) => repository.Verify(BackupId, IncludeChain, progress, token)));
    });

    private void Emit(VerificationResult result)
    {
        foreach (var issue in result.Issues)
        {
            WriteVerbose(issue.ToString());
        }

        WriteObject(Quiet ? result.IsValid : result);
    }
}
