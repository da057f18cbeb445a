using System.Management.Automation;
using BlockBackup.Engine;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Format;
using BlockBackup.Engine.Repository;

namespace BlockBackup.Commands;

/// <summary>
/// Registers a backup described by a Cinder backup-export record: checks that its files are in
/// the repository and match the record, and emits it.
/// </summary>
[Cmdlet(VerbsData.Import, "VolumeBackupRecord")]
[OutputType(typeof(BackupInfo))]
public sealed class ImportVolumeBackupRecordCommand : RepositoryCmdlet
{
    [Parameter(Mandatory = true, Position = 0)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(RepositoryCompleter))]
    public string Repository { get; set; } = null!;

    [Parameter(Mandatory = true, ValueFromPipelineByPropertyName = true)]
    [Alias("backup_service")]
    [ValidateNotNullOrEmpty]
    public string BackupService { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 1, ValueFromPipelineByPropertyName = true)]
    [Alias("backup_url")]
    [ValidateNotNullOrEmpty]
    public string BackupUrl { get; set; } = null!;

    protected override void ProcessRecord()
    {
        ForItem(() =>
        {
            if (OpenRepository(Repository) is not IChunkedRepository repository)
            {
                throw new BackupException(BackupErrorKind.NotSupported, "ImportNeedsFileRepository",
                    $"'{Repository}' is a Ceph backup pool, which describes itself: its backups are listed by Get-VolumeBackup without an import.", Repository);
            }

            WriteObject(CinderBackupRecord.Import(repository, BackupService, BackupUrl));
        });
    }
}
