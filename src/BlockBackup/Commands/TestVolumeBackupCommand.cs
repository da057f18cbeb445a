using System.Management.Automation;
using BlockBackup.Engine.Configuration;
using BlockBackup.Engine.Operations;

namespace BlockBackup.Commands;

/// <summary>
/// Reads every object of a backup (or its chain) and checks lengths, MD5s and block hashes; or,
/// with -SamplePercent, a rotating sample of the whole repository, so that repeated runs cover it all.
/// </summary>
[Cmdlet(VerbsDiagnostic.Test, "VolumeBackup", DefaultParameterSetName = BackupSet)]
[OutputType(typeof(VerificationResult), typeof(bool), typeof(SampledVerificationResult))]
public sealed class TestVolumeBackupCommand : RepositoryCmdlet
{
    private const string BackupSet = "Backup";
    private const string SampleSet = "Sample";

    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(RepositoryCompleter))]
    public string Repository { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 1, ParameterSetName = BackupSet, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("Id")]
    [ArgumentCompleter(typeof(BackupIdCompleter))]
    public Guid BackupId { get; set; }

    /// <summary>Verify every backup the restore needs, and that the chain adds up to this backup.</summary>
    [Parameter(ParameterSetName = BackupSet)]
    [Alias("Chain")]
    public SwitchParameter IncludeChain { get; set; }

    /// <summary>Check this share of the repository's objects, continuing the rotation where the last run stopped.</summary>
    [Parameter(Mandatory = true, ParameterSetName = SampleSet)]
    [ValidateRange(1, 100)]
    public int SamplePercent { get; set; }

    /// <summary>Return only $true or $false.</summary>
    [Parameter]
    public SwitchParameter Quiet { get; set; }

    protected override void ProcessRecord() => ForItem(() =>
    {
        var repository = OpenRepository(Repository);
        if (ParameterSetName == SampleSet)
        {
            var state = SampledVerification.StateFileFor(NodeConfiguration.Directory(), repository.Location);
            var sampled = RunWithProgress($"Verifying {SamplePercent}% of {repository.Location}", (progress, token) =>
                SampledVerification.Run(repository, SamplePercent, state, TimeProvider.System, progress, token));
            foreach (var issue in sampled.Issues)
            {
                WriteVerbose(issue.ToString());
            }

            WriteVerbose($"Rotation state: {state}.");
            WriteObject(Quiet ? sampled.IsValid : sampled);
            return;
        }

        var result = RunWithProgress($"Verifying {BackupId}", (progress, token) => repository.Verify(BackupId, IncludeChain, progress, token));
        foreach (var issue in result.Issues)
        {
            WriteVerbose(issue.ToString());
        }

        WriteObject(Quiet ? result.IsValid : result);
    });
}
