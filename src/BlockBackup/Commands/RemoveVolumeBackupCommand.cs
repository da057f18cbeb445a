using System.Management.Automation;
using BlockBackup.Engine;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Rbd;
using BlockBackup.Engine.Repository;

namespace BlockBackup.Commands;

/// <summary>
/// Deletes backups, refusing while incrementals depend on one unless -IncludeDependents; or, with
/// -Incomplete, removes what interrupted backups left behind. Piped backups are collected first
/// and removed newest first, so a whole chain (Get-BackupChain | Remove-VolumeBackup) goes
/// without -IncludeDependents, and a backup that an earlier item of the same call already
/// removed (as a dependent) is not an error. A leftover of an RBD image's backup into a chunked
/// repository also takes the snapshot that backup left on the image (through the Ceph
/// parameters), as the next backup of the image would.
/// </summary>
[Cmdlet(VerbsCommon.Remove, "VolumeBackup", DefaultParameterSetName = ByIdSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(BackupInfo))]
public sealed class RemoveVolumeBackupCommand : RepositoryCmdlet
{
    private const string ByIdSet = "ById";
    private const string IncompleteSet = "Incomplete";

    private readonly List<(string Repository, Guid BackupId)> requested = [];

    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(RepositoryCompleter))]
    public string Repository { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 1, ParameterSetName = ByIdSet, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("Id")]
    [ArgumentCompleter(typeof(BackupIdCompleter))]
    public Guid BackupId { get; set; }

    /// <summary>Also delete the incrementals that depend on the backup (newest first).</summary>
    [Parameter(ParameterSetName = ByIdSet)]
    public SwitchParameter IncludeDependents { get; set; }

    /// <summary>Remove backups left incomplete by a crash, kill or failed delete.</summary>
    [Parameter(Mandatory = true, ParameterSetName = IncompleteSet)]
    public SwitchParameter Incomplete { get; set; }

    /// <summary>
    /// With -Incomplete: how old a leftover that BlockBackup did not write (Cinder's) must be
    /// before it is removed, since it may be a backup being written right now. BlockBackup's own
    /// leftovers, whose backup provably stopped, go at once.
    /// </summary>
    [Parameter(ParameterSetName = IncompleteSet)]
    public TimeSpan MinimumAge { get; set; } = IncompleteBackups.DefaultMinimumAge;

    /// <summary>Emit the removed backups.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        if (Incomplete)
        {
            ForItem(RemoveLeftovers);
            return;
        }

        requested.Add((Repository, BackupId));
    }

    protected override void EndProcessing()
    {
        foreach (var group in requested.GroupBy(r => r.Repository, StringComparer.Ordinal))
        {
            ForItem(() => RemoveNewestFirst(OpenRepository(group.Key), group.Select(r => r.BackupId).Distinct().ToList()));
        }
    }

    private void RemoveNewestFirst(IBackupRepository repository, IReadOnlyList<Guid> ids)
    {
        var all = repository.List(includeIncomplete: true, StopToken);
        var removed = new HashSet<Guid>();
        var order = ids
            .Select(id => (Id: id, Backup: BackupGraph.ById(all, id)))
            .OrderByDescending(r => r.Backup?.CreatedUtc ?? DateTime.MaxValue)
            .ToList();
        foreach (var (id, backup) in order)
        {
            ForItem(() =>
            {
                if (backup is null)
                {
                    throw new BackupException(BackupErrorKind.NotFound, "BackupNotFound", $"No backup with id {id} in repository '{repository.Location}'.", id);
                }

                if (removed.Contains(id))
                {
                    WriteVerbose($"Backup {id} was already removed by this command (as a dependent).");
                    return;
                }

                var dependents = repository.GetDependents(id, recursive: true, all).Where(d => !removed.Contains(d.Id)).ToList();
                var what = dependents.Count > 0 && IncludeDependents
                    ? $"Delete backup {id} and its {ViewText.Count(dependents.Count, "dependent incremental backup")}"
                    : $"Delete backup {id}";
                if (!ShouldProcess($"{backup.Name ?? backup.Id.ToString()} ({repository.Location}, {Place(backup)})", what))
                {
                    return;
                }

                foreach (var b in repository.Remove(backup, IncludeDependents, StopToken))
                {
                    removed.Add(b.Id);
                    WriteVerbose($"Removed backup {b.Id} ({Place(b)}).");
                    if (PassThru)
                    {
                        WriteObject(b);
                    }
                }
            });
        }
    }

    private void RemoveLeftovers()
    {
        // The Ceph parameters apply to any repository here: a leftover may be an RBD image's backup.
        var repository = OpenRepository(Repository, usesCeph: true);
        var now = DateTime.UtcNow;
        var incomplete = repository.List(includeIncomplete: true, StopToken).Where(b => b.Status == BackupStatus.Incomplete).ToList();
        var leftovers = incomplete.Where(b => IncompleteBackups.MayRemove(b, MinimumAge, now)).ToList();
        var young = incomplete.Except(leftovers).ToList();
        if (young.Count > 0)
        {
            WriteWarning($"Kept {ViewText.Count(young.Count, "incomplete backup")} that BlockBackup did not write and that {(young.Count == 1 ? "is" : "are")} younger than {MinimumAge} ({string.Join(", ", young.Select(b => b.Id))}): Cinder may be writing them right now. Pass -MinimumAge 0 to remove them anyway.");
        }

        if (leftovers.Count == 0)
        {
            WriteVerbose($"No incomplete backups to remove in '{repository.Location}'.");
            return;
        }

        if (!ShouldProcess(repository.Location, $"Remove {ViewText.Count(leftovers.Count, "incomplete backup")}: {string.Join(", ", leftovers.Select(b => $"{b.Id} ({Place(b)})"))}"))
        {
            return;
        }

        foreach (var b in repository.RemoveIncomplete(MinimumAge, StopToken))
        {
            WriteVerbose($"Removed incomplete backup {b.Id} ({Place(b)}){(b.Problem is { } what ? ": " + what : "")}.");
            if (repository is IChunkedRepository && b.Source is { } source && source.StartsWith("rbd:", StringComparison.Ordinal))
            {
                RemoveSourceSnapshot(repository, b, source["rbd:".Length..]);
            }

            if (PassThru)
            {
                WriteObject(b);
            }
        }
    }

    /// <summary>
    /// The snapshot an interrupted backup of an RBD image left on that image. A failure here is a
    /// warning: the leftover in the repository is gone, and the next backup of the image removes
    /// the snapshot too.
    /// </summary>
    private void RemoveSourceSnapshot(IBackupRepository repository, BackupInfo leftover, string spec)
    {
        try
        {
            var image = ParseImage(spec);
            if (RbdFileBackupOperation.RemoveSnapshotOfIncomplete(RbdClient(), image, repository, leftover.Id, MinimumAge) is { } snapshot)
            {
                WriteVerbose($"Removed snapshot {snapshot} that incomplete backup {leftover.Id} took of its source.");
            }
        }
        catch (BackupException ex)
        {
            WriteWarning($"Incomplete backup {leftover.Id} was of RBD image '{spec}', and the snapshot it may have left there was not checked: {ex.Message} " +
                "The next backup of that image into this repository removes it; or pass -CephConfig/-CephUser/-CephKeyring and run this again.");
        }
    }
}
