using System.Management.Automation;
using BlockBackup.Engine.Format;
using BlockBackup.Engine.Repository;

namespace BlockBackup.Commands;

/// <summary>Writes Cinder's backup-export record for a backup, for `cinder backup-import`.</summary>
[Cmdlet(VerbsData.Export, "VolumeBackupRecord")]
[OutputType(typeof(CinderBackupRecord))]
public sealed class ExportVolumeBackupRecordCommand : BackupItemCmdlet
{
    /// <summary>The Cinder driver that will read the repository (file repositories: posix by default, or NFS; pools: Ceph).</summary>
    [Parameter]
    [ValidateSet(CinderBackupRecord.PosixService, CinderBackupRecord.NfsService, CinderBackupRecord.CephService)]
    public string? BackupService { get; set; }

    protected override void ProcessRecord() => ForItem(() => WriteObject(OpenRepository(Repository).ExportRecord(BackupId, BackupService)));
}
