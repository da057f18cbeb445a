using System.Management.Automation;
using BlockBackup.Engine;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Policies;

namespace BlockBackup.Commands;

/// <summary>
/// Applies a retention rule (restic-style Keep* counts, KeepWithin) to the backups of a
/// repository's volumes, chain-aware: emits one decision per backup and removes the rest,
/// dependents before parents. The planning is the engine's RetentionPlanner; this cmdlet lists,
/// asks ShouldProcess, removes through the same engine calls as Remove-VolumeBackup, and reports.
/// </summary>
[Cmdlet(VerbsData.Limit, "VolumeBackup", DefaultParameterSetName = VolumeSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High)]
[OutputType(typeof(RetentionDecision))]
public sealed class LimitVolumeBackupCommand : RepositoryCmdlet
{
    private const string VolumeSet = "Volume";
    private const string BackupSet = "Backup";

    private readonly List<string> repositories = [];
    private readonly List<(string Repository, Guid BackupId)> piped = [];
    private RetentionRule rule = null!;

    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(RepositoryCompleter))]
    public string Repository { get; set; } = null!;

    /// <summary>Only the backups of these volumes (default: every volume in the repository).</summary>
    [Parameter(ParameterSetName = VolumeSet)]
    public Guid[]? VolumeId { get; set; }

    /// <summary>Piped backups: the rule applies to these only; the other backups of their volumes are left alone.</summary>
    [Parameter(Mandatory = true, ParameterSetName = BackupSet, ValueFromPipelineByPropertyName = true)]
    [Alias("Id")]
    [ArgumentCompleter(typeof(BackupIdCompleter))]
    public Guid BackupId { get; set; }

    [Parameter]
    [ValidateRange(0, int.MaxValue)]
    public int KeepLast { get; set; }

    [Parameter]
    [ValidateRange(0, int.MaxValue)]
    public int KeepHourly { get; set; }

    [Parameter]
    [ValidateRange(0, int.MaxValue)]
    public int KeepDaily { get; set; }

    [Parameter]
    [ValidateRange(0, int.MaxValue)]
    public int KeepWeekly { get; set; }

    [Parameter]
    [ValidateRange(0, int.MaxValue)]
    public int KeepMonthly { get; set; }

    [Parameter]
    [ValidateRange(0, int.MaxValue)]
    public int KeepYearly { get; set; }

    [Parameter]
    public TimeSpan? KeepWithin { get; set; }

    /// <summary>Evaluate the rule as of this time instead of now: a preview, nothing is removed.</summary>
    [Parameter]
    public DateTime? AsOf { get; set; }

    /// <summary>Also remove damaged and incomplete backups that no kept backup needs (otherwise they are kept and reported).</summary>
    [Parameter]
    public SwitchParameter RemoveDamaged { get; set; }

    protected override void BeginProcessing()
    {
        rule = new RetentionRule
        {
            KeepLast = KeepLast, KeepHourly = KeepHourly, KeepDaily = KeepDaily, KeepWeekly = KeepWeekly, KeepMonthly = KeepMonthly, KeepYearly = KeepYearly,
            KeepWithin = KeepWithin, RemoveDamaged = RemoveDamaged,
        };
        try
        {
            // Refused before anything is read: a rule that keeps nothing must not reach a repository.
            rule.Validate();
        }
        catch (BackupException ex)
        {
            ThrowTerminatingError(ToErrorRecord(ex));
        }
    }

    protected override void ProcessRecord()
    {
        // Backups are collected first: the rule is about all of them together, not one at a time.
        if (ParameterSetName == BackupSet)
        {
            piped.Add((Repository, BackupId));
        }
        else if (!repositories.Contains(Repository, StringComparer.Ordinal))
        {
            repositories.Add(Repository);
        }
    }

    protected override void EndProcessing()
    {
        var now = AsOf is { } asOf ? new DateTimeOffset(asOf.Kind == DateTimeKind.Unspecified ? DateTime.SpecifyKind(asOf, DateTimeKind.Local) : asOf) : TimeProvider.System.GetUtcNow();
        if (AsOf is not null)
        {
            WriteVerbose($"Evaluating as of {now:u}: a preview, nothing is removed.");
        }

        if (ParameterSetName == BackupSet)
        {
            foreach (var group in piped.GroupBy(p => p.Repository, StringComparer.Ordinal))
            {
                var selected = group.Select(p => p.BackupId).ToHashSet();
                ForItem(() => Apply(group.Key, now, selected));
            }
        }
        else
        {
            foreach (var repository in repositories)
            {
                ForItem(() => Apply(repository, now, null));
            }
        }
    }

    private void Apply(string repositoryPath, DateTimeOffset now, HashSet<Guid>? selected)
    {
        var repository = OpenRepository(repositoryPath);
        var all = repository.List(includeIncomplete: true, StopToken);
        // The exact entry the plan decided on (id and place), never "a backup with that id".
        IReadOnlyList<BackupInfo> remove(BackupInfo backup) => repository.Remove(backup, includeDependents: false, StopToken);

        IEnumerable<BackupInfo> scope = all;
        if (VolumeId is { Length: > 0 } volumes)
        {
            scope = scope.Where(b => volumes.Contains(b.VolumeId));
        }

        if (selected is not null)
        {
            foreach (var gone in selected.Where(id => all.All(b => b.Id != id)))
            {
                WriteVerbose($"Backup {gone} is no longer in '{repositoryPath}' (already removed).");
            }

            // The volumes of the piped backups; their other backups still count for the chains.
            var ofVolumes = all.Where(b => selected.Contains(b.Id)).Select(b => b.VolumeId).ToHashSet();
            scope = scope.Where(b => ofVolumes.Contains(b.VolumeId));
        }

        var backups = scope.ToList();
        var plan = RetentionPlanner.Plan(backups, rule, now, TimeZoneInfo.Local, selected is null ? null : b => selected.Contains(b.Id));
        // Against the real clock, also in an -AsOf preview (where "after the time evaluated" is expected).
        var clock = TimeProvider.System.GetUtcNow();
        foreach (var future in RetentionPlanner.DatedInFuture(backups, clock))
        {
            WriteWarning(RetentionPlanner.FutureDatedWarning(future, clock));
        }
        var removed = AsOf is null ? Remove(plan, remove) : [];
        foreach (var decision in plan.Decisions.Where(d => selected is null || selected.Contains(d.BackupId)))
        {
            WriteObject(removed.Contains(decision.Backup) ? decision with { Removed = true } : decision);
        }
    }

    /// <summary>
    /// Removes in the plan's order (dependents first) and returns what was removed; a backup
    /// whose dependent stays (declined at the prompt, refused) stays too.
    /// </summary>
    private HashSet<BackupInfo> Remove(RetentionPlan plan, Func<BackupInfo, IReadOnlyList<BackupInfo>> remove)
    {
        var done = new HashSet<BackupInfo>(ReferenceEqualityComparer.Instance);
        var reasons = new Dictionary<Guid, IReadOnlyList<string>>();
        foreach (var d in plan.Decisions)
        {
            reasons.TryAdd(d.BackupId, d.Reasons);
        }

        // Parents of backups that could not be removed: the engine would refuse them (dependents exist).
        var blocked = new HashSet<Guid>();
        foreach (var backup in plan.RemovalOrder)
        {
            if (blocked.Contains(backup.Id))
            {
                Block(backup);
                WriteWarning($"Backup {backup.Id} is kept: a backup that depends on it stays (declined or not removable).");
                continue;
            }

            if (!ShouldProcess($"{backup.Name ?? backup.Id.ToString()} ({Place(backup)})",
                $"Remove backup {backup.Id} made {backup.CreatedUtc.ToLocalTime():g} ({string.Join("; ", reasons[backup.Id])})"))
            {
                Block(backup); // declined: what it depends on is needed still
                continue;
            }

            try
            {
                foreach (var removed in remove(backup))
                {
                    WriteVerbose($"Removed backup {removed.Id} ({Place(removed)}).");
                }

                done.Add(backup);
            }
            catch (BackupException ex) when (ex.Kind == BackupErrorKind.NotFound)
            {
                WriteVerbose($"Backup {backup.Id} is already gone.");
            }
            catch (BackupException ex)
            {
                Block(backup);
                WriteError(ToErrorRecord(ex));
            }
        }

        return done;

        void Block(BackupInfo backup)
        {
            if (backup.ParentId is { } parent)
            {
                blocked.Add(parent);
            }
        }
    }
}
