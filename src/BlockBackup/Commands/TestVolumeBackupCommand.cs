using System.Management.Automation;
using BlockBackup.Engine.Operations;

namespace BlockBackup.Commands;

/// <summary>Reads every object of a backup (or its chain) and checks lengths, MD5s and block hashes.</summary>
[Cmdlet(VerbsDiagnostic.Test, "VolumeBackup")]
[OutputType(typeof(VerificationResult), typeof(bool))]
public sealed class TestVolumeBackupCommand : EngineCmdlet
{
    [Parameter(Mandatory = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string Repository { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("Id")]
    [ArgumentCompleter(typeof(BackupIdCompleter))]
    public Guid BackupId { get; set; }

    /// <summary>Verify every backup the restore needs, and that the chain adds up to this backup.</summary>
    [Parameter]
    [Alias("Chain")]
    public SwitchParameter IncludeChain { get; set; }

    /// <summary>Return only $true or $false.</summary>
    [Parameter]
    public SwitchParameter Quiet { get; set; }

    protected override void ProcessRecord()
    {
        var repository = OpenRepository(Repository);
        ForItem(() =>
        {
            var result = RunWithProgress($"Verifying {BackupId}", (progress, token) => VerifyOperation.Run(repository, BackupId, IncludeChain, progress, token));
            foreach (var issue in result.Issues)
            {
                WriteVerbose(issue.ToString());
            }

            WriteObject(Quiet ? result.IsValid : result);
        });
    }
}
