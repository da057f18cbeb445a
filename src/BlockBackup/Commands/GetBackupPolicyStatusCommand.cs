using System.Management.Automation;
using BlockBackup.Engine;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Operations;
using BlockBackup.Engine.Policies;
using BlockBackup.Engine.Rbd;
using BlockBackup.Engine.Repository;

namespace BlockBackup.Commands;

/// <summary>
/// Per policy and volume: health (Healthy, Late, Failing, NeverRun), the last successful backup and
/// its age, next due time, last error, chain length and stored bytes. Plain data, so a monitoring
/// system can poll `Get-BackupPolicyStatus | ConvertTo-Json`.
/// </summary>
[Cmdlet(VerbsCommon.Get, "BackupPolicyStatus")]
[OutputType(typeof(PolicyVolumeStatus))]
public sealed class GetBackupPolicyStatusCommand : PolicyCmdlet
{
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(PolicyNameCompleter))]
    public string[] Name { get; set; } = ["*"];

    protected override void ProcessRecord()
    {
        var store = Store();
        var now = TimeProvider.System.GetUtcNow();
        foreach (var name in Name.SelectMany(n => Matching(store, n)).Distinct(StringComparer.OrdinalIgnoreCase))
        {
            ForItem(() =>
            {
                var policy = store.Get(name);
                IReadOnlyList<BackupInfo>? backups = null;
                string? repositoryError = null;
                IBackupRepository? repository = null;
                using var client = policy.Repository.StartsWith(RbdBackupPool.RepositoryPrefix, StringComparison.OrdinalIgnoreCase)
                    ? new RbdClient(new RbdConnection(policy.CephConfig, policy.CephUser, policy.CephKeyring)) : null;
                try
                {
                    repository = RepositoryFactory.Open(RepositoryLocation.Parse(policy.Repository, ResolvePath), () => client!);
                    backups = repository.List(includeIncomplete: false, StopToken);
                }
                catch (BackupException ex)
                {
                    repositoryError = ex.Message;
                }

                var coverage = repository is null ? null : SampledVerification.Coverage(SampledVerification.StateFileFor(store.Directory, repository.Location))?.LastFullCoverageUtc;
                var declared = policy.Path.Where(p => !WildcardPattern.ContainsWildcardCharacters(p)).Concat(policy.RbdImage);
                foreach (var status in PolicyStatusReport.Build(policy, store.State(name), declared, backups, now, coverage, repositoryError))
                {
                    WriteObject(status);
                }
            });
        }
    }
}
