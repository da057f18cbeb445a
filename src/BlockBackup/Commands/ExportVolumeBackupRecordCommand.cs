using System.Management.Automation;
using BlockBackup.Engine.Format;

namespace BlockBackup.Commands;

/// <summary>Writes Cinder's backup-export record for a backup, for `cinder backup-import`.</summary>
[Cmdlet(VerbsData.Export, "VolumeBackupRecord")]
[OutputType(typeof(CinderBackupRecord))]
public sealed class ExportVolumeBackupRecordCommand : BackupItemCmdlet
{
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
