using System.Management.Automation;
using BlockBackup.Engine;
using BlockBackup.Engine.Rbd;

namespace BlockBackup.Commands;

/// <summary>Lists the backups of a repository, read from the repository itself.</summary>
[Cmdlet(VerbsCommon.Get, "VolumeBackup", DefaultParameterSetName = ListSet)]
[OutputType(typeof(BackupInfo))]
public sealed class GetVolumeBackupCommand : RepositoryCmdlet
{
    private const string ListSet = "List";
    private const string IdSet = "Id";

    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string Repository { get; set; } = null!;

    /// <summary>Only these backups (non-terminating error for each id that is not found).</summary>
    [Parameter(Mandatory = true, ParameterSetName = IdSet, ValueFromPipeline = true)]
    [Alias("BackupId")]
    [ArgumentCompleter(typeof(BackupIdCompleter))]
    public Guid[] Id { get; set; } = [];

    [Parameter(ParameterSetName = ListSet, ValueFromPipelineByPropertyName = true)]
    public Guid? VolumeId { get; set; }

    /// <summary>Backup name; wildcards allowed.</summary>
    [Parameter(ParameterSetName = ListSet)]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(BackupNameCompleter))]
    public string? Name { get; set; }

    /// <summary>Only the newest available backup of each volume.</summary>
    [Parameter(ParameterSetName = ListSet)]
    public SwitchParameter Latest { get; set; }

    /// <summary>Also list backups that are being written, incomplete (interrupted) or damaged.</summary>
    [Parameter]
    public SwitchParameter IncludeIncomplete { get; set; }

    protected override void ProcessRecord()
    {
        IReadOnlyList<BackupInfo> all;
        string root;
        if (IsRbd(Repository))
        {
            var pool = OpenPool(Repository);
            root = pool.Repository;
            all = pool.List();
        }
        else
        {
            var repository = OpenRepository(Repository);
            root = repository.Root;
            all = repository.List(IncludeIncomplete, StopToken);
        }

        if (ParameterSetName == IdSet)
        {
            foreach (var id in Id)
            {
                var match = all.FirstOrDefault(b => b.Id == id);
                if (match is null)
                {
                    WriteError(new ErrorRecord(new ItemNotFoundException($"No backup with id {id} in repository '{root}'."),
                        "BackupNotFound", ErrorCategory.ObjectNotFound, id));
                }
                else
                {
                    WriteObject(match);
                }
            }

            return;
        }

        IEnumerable<BackupInfo> selected = all;
        if (VolumeId is { } volumeId)
        {
            selected = selected.Where(b => b.VolumeId == volumeId);
        }

        if (!string.IsNullOrEmpty(Name))
        {
            var pattern = WildcardPattern.Get(Name, WildcardOptions.IgnoreCase);
            selected = selected.Where(b => b.Name is not null && pattern.IsMatch(b.Name));
        }

        if (Latest)
        {
            selected = selected.Where(b => b.Status == BackupStatus.Available)
                .GroupBy(b => b.VolumeId)
                .Select(g => g.MaxBy(b => (b.CreatedUtc, b.Prefix))!)
                .OrderBy(b => b.CreatedUtc);
        }

        foreach (var backup in selected)
        {
            WriteObject(backup);
        }
    }
}
