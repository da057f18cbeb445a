using System.Management.Automation;

namespace BlockBackup.Commands;

/// <summary>
/// Cmdlets that act on one backup per pipeline item: the backup is named by repository and id,
/// both bound by property name (and positionally in that order, on every cmdlet), so backups (live or deserialized), chains and Cinder rows pipe in.
/// </summary>
public abstract class BackupItemCmdlet : RepositoryCmdlet
{
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(RepositoryCompleter))]
    public string Repository { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 1, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("Id")]
    [ArgumentCompleter(typeof(BackupIdCompleter))]
    public Guid BackupId { get; set; }
}
