using System.Management.Automation;
using BlockBackup.Engine;

namespace BlockBackup.Commands;

/// <summary>
/// Lists the backups of a repository, read from the repository itself. Damaged backups are
/// listed (Status Damaged, with the Problem); backups being written or left incomplete are
/// hidden unless -IncludeIncomplete, with a warning that says how to remove leftovers.
/// </summary>
[Cmdlet(VerbsCommon.Get, "VolumeBackup", DefaultParameterSetName = ListSet)]
[OutputType(typeof(BackupInfo))]
public sealed class GetVolumeBackupCommand : RepositoryCmdlet
{
    private const string ListSet = "List";
    private const string IdSet = "Id";
    private const string InputSet = "InputObject";

    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(RepositoryCompleter))]
    public string Repository { get; set; } = null!;

    /// <summary>Only these backups (non-terminating error for each id that is not found).</summary>
    [Parameter(Mandatory = true, Position = 1, ParameterSetName = IdSet, ValueFromPipeline = true)]
    [Alias("BackupId")]
    [ArgumentCompleter(typeof(BackupIdCompleter))]
    public Guid[] Id { get; set; } = [];

    [Parameter(ParameterSetName = ListSet, ValueFromPipelineByPropertyName = true)]
    public Guid? VolumeId { get; set; }

    /// <summary>
    /// Backups piped in (Get-VolumeBackup -Latest | Get-VolumeBackup): each read again by its id, in
    /// the repository it names. Bound by value before any property is, so that a backup's VolumeId
    /// does not select the list set and widen the result to every backup of its volume.
    /// </summary>
    [Parameter(Mandatory = true, ParameterSetName = InputSet, ValueFromPipeline = true)]
    public BackupInfo InputObject { get; set; } = null!;

    /// <summary>Backup name; wildcards allowed.</summary>
    [Parameter(ParameterSetName = ListSet)]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(BackupNameCompleter))]
    public string? Name { get; set; }

    /// <summary>Only the newest available backup of each volume.</summary>
    [Parameter(ParameterSetName = ListSet)]
    public SwitchParameter Latest { get; set; }

    /// <summary>Also list backups that are being written or were left incomplete (interrupted).</summary>
    [Parameter]
    public SwitchParameter IncludeIncomplete { get; set; }

    protected override void ProcessRecord() => ForItem(() =>
    {
        var repository = OpenRepository(Repository);
        var all = repository.List(includeIncomplete: true, StopToken);
        if (ParameterSetName is IdSet or InputSet)
        {
            foreach (var id in ParameterSetName == InputSet ? [InputObject.Id] : Id)
            {
                var match = all.FirstOrDefault(b => b.Id == id);
                if (match is null)
                {
                    WriteError(new ErrorRecord(new ItemNotFoundException($"No backup with id {id} in repository '{repository.Location}'."),
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
        if (!IncludeIncomplete)
        {
            var hidden = all.Count(b => b.Status == BackupStatus.Incomplete);
            if (hidden > 0)
            {
                WriteWarning($"{ViewText.Count(hidden, "incomplete backup")} in '{repository.Location}' {(hidden == 1 ? "is" : "are")} hidden: interrupted backups that can never be restored. " +
                    $"List them with -IncludeIncomplete; remove them with: Remove-VolumeBackup -Repository '{repository.Location.Replace("'", "''", StringComparison.Ordinal)}' -Incomplete");
            }

            selected = selected.Where(b => b.Status is BackupStatus.Available or BackupStatus.Damaged);
        }

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
    });
}
