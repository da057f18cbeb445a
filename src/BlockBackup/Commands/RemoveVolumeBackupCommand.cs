using System.Management.Automation;
using BlockBackup.Engine;
using BlockBackup.Engine.Errors;

namespace BlockBackup.Commands;

/// <summary>
/// Deletes a backup's files, refusing while incrementals depend on it unless
/// -IncludeDependents; or, with -Incomplete, removes what interrupted backups left behind.
/// </summary>
[Cmdlet(VerbsCommon.Remove, "VolumeBackup", DefaultParameterSetName = ByIdSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(BackupInfo))]
public sealed class RemoveVolumeBackupCommand : RepositoryCmdlet
{
    private const string ByIdSet = "ById";
    private const string IncompleteSet = "Incomplete";

    [Parameter(Mandatory = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string Repository { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 0, ParameterSetName = ByIdSet, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("Id")]
    [ArgumentCompleter(typeof(BackupIdCompleter))]
    public Guid BackupId { get; set; }

    /// <summary>Also delete the incrementals that depend on the backup (newest first).</summary>
    [Parameter(ParameterSetName = ByIdSet)]
    public SwitchParameter IncludeDependents { get; set; }

    /// <summary>Remove backups left incomplete by a crash, kill or failed delete.</summary>
    [Parameter(Mandatory = true, ParameterSetName = IncompleteSet)]
    public SwitchParameter Incomplete { get; set; }

    /// <summary>Emit the removed backups.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        if (IsRbd(Repository))
        {
            RemoveFromPool();
            return;
        }

        var repository = OpenRepository(Repository);
        ForItem(() =>
        {
            if (Incomplete)
            {
                var leftovers = repository.List(includeIncomplete: true).Where(b => b.Status == BackupStatus.Incomplete).ToList();
                if (leftovers.Count == 0 || !ShouldProcess(repository.Root, $"Remove {leftovers.Count} incomplete backup(s): {string.Join(", ", leftovers.Select(b => b.Container))}"))
                {
                    return;
                }

                Emit(repository.RemoveIncomplete(StopToken));
                return;
            }

            var all = repository.List(includeIncomplete: true);
            var backup = all.FirstOrDefault(b => b.Id == BackupId)
                ?? throw new BackupException(BackupErrorKind.NotFound, "BackupNotFound", $"No backup with id {BackupId} in repository '{repository.Root}'.", BackupId);
            var dependents = repository.GetDependents(BackupId, recursive: true, all);
            var what = dependents.Count > 0 && IncludeDependents
                ? $"Delete backup {BackupId} and its {dependents.Count} dependent incremental backup(s)"
                : $"Delete backup {BackupId}";
            if (!ShouldProcess($"{backup.Name ?? backup.Id.ToString()} ({backup.Container})", what))
            {
                return;
            }

            Emit(repository.Remove(BackupId, IncludeDependents, StopToken));
        });
    }

    /// <summary>A pool backup: its snapshot on the base (the base once empty) and on the source.</summary>
    private void RemoveFromPool()
    {
        var pool = OpenPool(Repository);
        ForItem(() =>
        {
            if (Incomplete)
            {
                return; // a pool backup exists only once its snapshot does: nothing is ever left incomplete
            }

            var backup = pool.Get(BackupId);
            if (ShouldProcess($"{backup.Name ?? backup.Id.ToString()} ({pool.Repository}/{backup.Container}@{backup.Prefix})",
                IncludeDependents ? $"Delete backup {BackupId} and the backups that depend on it" : $"Delete backup {BackupId}"))
            {
                Emit(Engine.Rbd.RbdBackupOperation.Remove(pool, BackupId, IncludeDependents));
            }
        });
    }

    private void Emit(IReadOnlyList<BackupInfo> removed)
    {
        foreach (var b in removed)
        {
            WriteVerbose($"Removed backup {b.Id} ({b.Container}).");
            if (PassThru)
            {
                WriteObject(b);
            }
        }
    }
}
