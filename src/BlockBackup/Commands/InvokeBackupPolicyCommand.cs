using System.Management.Automation;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Policies;
using BlockBackup.Engine.Rbd;

namespace BlockBackup.Commands;

/// <summary>
/// Runs backup policies: -Name now, or -Due every policy whose schedule had an occurrence since it
/// last ran (one catch-up run after downtime). Emits one run record per volume; every failed
/// volume (and every policy whose file cannot be read) is also a non-terminating error, written
/// after all the work, so one failure never stops the rest and `-ErrorAction Stop` /
/// `pwsh -NonInteractive` end with a failure.
/// </summary>
[Cmdlet(VerbsLifecycle.Invoke, "BackupPolicy", DefaultParameterSetName = NameSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(PolicyRunRecord))]
public sealed class InvokeBackupPolicyCommand : PolicyCmdlet
{
    private const string NameSet = "Name";
    private const string DueSet = "Due";
    private readonly List<PolicyRunRecord> failures = [];
    private readonly List<BackupException> unreadable = [];

    [Parameter(Mandatory = true, Position = 0, ParameterSetName = NameSet, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(PolicyNameCompleter))]
    public string[] Name { get; set; } = [];

    /// <summary>Run every policy that is due now.</summary>
    [Parameter(Mandatory = true, ParameterSetName = DueSet)]
    public SwitchParameter Due { get; set; }

    protected override void ProcessRecord()
    {
        var store = Store();
        var names = Due ? StoredNames(store) : Name.SelectMany(n => Matching(store, n)).Distinct(StringComparer.OrdinalIgnoreCase).ToList();
        var now = TimeProvider.System.GetUtcNow();
        foreach (var name in names)
        {
            ForItem(() =>
            {
                // One unreadable policy file is that policy's failure, reported with the others
                // after every due policy has run: under the scheduler's -ErrorAction Stop an
                // immediate error would end the run and no policy would ever run again.
                BackupPolicy policy;
                try
                {
                    policy = store.Get(name);
                }
                catch (BackupException ex)
                {
                    unreadable.Add(ex);
                    return;
                }

                if (Due && !ScheduleEvaluator.IsDue(policy, store.State(name).LastRunUtc, policy.CreatedUtc, now))
                {
                    WriteVerbose($"Policy '{name}' is not due (next: {ScheduleEvaluator.Next(policy, store.State(name).LastRunUtc ?? policy.CreatedUtc):u}).");
                    return;
                }

                // Wildcards are PowerShell's to expand, on the pipeline thread, before the work starts.
                var expanded = policy.Path.ToDictionary(p => p, Expand, StringComparer.Ordinal);
                PolicyRunner Runner(Action<string>? log) => new(store, TimeProvider.System, p => new RbdClient(new RbdConnection(p.CephConfig, p.CephUser, p.CephKeyring)))
                {
                    ExpandPath = p => expanded[p],
                    Log = log,
                };

                // Under -WhatIf the question is what the run would do: each volume's backup and
                // what retention would then remove, with the reasons (planned, nothing written).
                var action = "Run backup policy";
                if (IsWhatIf())
                {
                    var plan = RunWithProgress($"Planning backup policy {name}", (_, token) => Runner(null).Preview(policy, token));
                    action = $"Run backup policy into '{policy.Repository}': {string.Join(" | ", plan)}";
                }

                if (!ShouldProcess(name, action))
                {
                    return;
                }

                var records = RunWithProgress($"Backup policy {name}", (progress, log, token) => Runner(log).Run(policy, progress, token));
                foreach (var record in records)
                {
                    WriteObject(record);
                    if (record.Skipped)
                    {
                        WriteWarning(record.Reason);
                    }
                    else if (record.Error is not null)
                    {
                        failures.Add(record);
                    }
                }
            });
        }
    }

    /// <summary>Where every run writes the node's policy metrics for node_exporter's textfile collector (see Get-BackupPolicyStatus -MetricsPath).</summary>
    public const string MetricsVariable = "BLOCKBACKUP_METRICS_PATH";

    protected override void EndProcessing()
    {
        // Before the errors: under -ErrorAction Stop (the scheduler's command) the first one ends
        // the cmdlet, and a failed run is exactly what the metrics must show.
        if (Environment.GetEnvironmentVariable(MetricsVariable) is { Length: > 0 } metrics && !IsWhatIf())
        {
            ForItem(() =>
            {
                var store = Store();
                var now = TimeProvider.System.GetUtcNow();
                var statuses = new List<PolicyVolumeStatus>();
                foreach (var name in StoredNames(store))
                {
                    try
                    {
                        statuses.AddRange(StatusOf(store, name, now));
                    }
                    catch (BackupException ex)
                    {
                        WriteWarning($"Policy '{name}' is left out of the metrics in '{metrics}': {ex.Message}");
                    }
                }

                PolicyMetrics.Write(ResolvePath(metrics), PolicyMetrics.Format(statuses, now));
            });
        }

        foreach (var ex in unreadable)
        {
            WriteError(ToErrorRecord(ex));
        }

        foreach (var failed in failures)
        {
            WriteError(ToErrorRecord(new BackupException(BackupErrorKind.WriteError, failed.ErrorId ?? "PolicyRunFailed",
                $"Backup policy '{failed.Policy}', volume '{failed.Volume}': {failed.Error}", failed.Volume)));
        }
    }

    private bool IsWhatIf() => MyInvocation.BoundParameters.TryGetValue("WhatIf", out var bound)
        ? LanguagePrimitives.IsTrue(bound)
        : LanguagePrimitives.IsTrue(GetVariableValue("WhatIfPreference", false));

    private IEnumerable<string> Expand(string pattern)
    {
        if (!WildcardPattern.ContainsWildcardCharacters(pattern))
        {
            return [pattern];
        }

        try
        {
            return SessionState.Path.GetResolvedProviderPathFromPSPath(pattern, out _).ToList();
        }
        catch (ItemNotFoundException)
        {
            return [pattern];   // the backup of a path that matches nothing fails with VolumeNotFound, naming it
        }
    }
}
