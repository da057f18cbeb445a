using System.Management.Automation;
using BlockBackup.Engine.Format;

namespace BlockBackup.Commands;

/// <summary>Writes Cinder's backup-export record for a backup, for `cinder backup-import`.</summary>
[Cmdlet(VerbsData.Export, "VolumeBackupRecord")]
[OutputType(typeof(CinderBackupRecord))]
public sealed class ExportVolumeBackupRecordCommand : RepositoryCmdlet
{
    [Parameter(Mandatory = true, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string Repository { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("Id")]
    [ArgumentCompleter(typeof(BackupIdCompleter))]
    public Guid BackupId { get; set; }

    /// <summary>The Cinder driver that will read the repository (posix by default, or NFS).</summary>
    [Parameter]
    [ValidateSet(CinderBackupRecord.PosixService, CinderBackupRecord.NfsService, CinderBackupRecord.CephService)]
    public string BackupService { get; set; } = CinderBackupRecord.PosixService;

    protected override void ProcessRecord()
    {
        if (IsRbd(Repository))
        {
            var pool = OpenPool(Repository);
            ForItem(() => WriteObject(CinderBackupRecord.Export(pool.Get(BackupId), CinderBackupRecord.CephService)));
            return;
        }

        var repository = OpenRepository(Repository);
        ForItem(() => WriteObject(CinderBackupRecord.Export(repository.Get(BackupId), BackupService)));
    }
}
