@{
    RootModule           = 'BlockBackup.dll'
    ModuleVersion        = '0.1.0'
    GUID                 = '5b0c7d4e-6a51-4f0b-9d3e-2c8f1a7e4b90'
    Author               = 'BlockBackup contributors'
    CompanyName          = 'BlockBackup contributors'
    Copyright            = '(c) BlockBackup contributors. All rights reserved.'
    Description          = 'Backs up and restores block volumes (image files, block devices, Ceph RBD images) in the formats of OpenStack Cinder''s backup drivers: posix/NFS directories, S3 buckets, Swift containers and Ceph RBD pools. Full and incremental chains, verification, retention, Cinder backup records, registered object-store repositories, backup policies run by systemd, cron or the Task Scheduler, and a DSC resource (class-based and DSC v3).'
    CompatiblePSEditions = @('Core')
    PowerShellVersion    = '7.4'
    NestedModules        = @('BlockBackup.Dsc.psm1')
    DscResourcesToExport = @('BlockBackupPolicy')
    FormatsToProcess     = @('BlockBackup.format.ps1xml')
    TypesToProcess       = @('BlockBackup.types.ps1xml')
    CmdletsToExport      = @(
        'Export-VolumeBackupRecord'
        'Get-BackupChain'
        'Get-BackupPolicy'
        'Get-BackupPolicyStatus'
        'Get-BackupRepository'
        'Get-BackupSchedule'
        'Dismount-VolumeBackup'
        'Get-VolumeBackup'
        'Get-VolumeBackupMount'
        'Import-VolumeBackupRecord'
        'Invoke-BackupPolicy'
        'Limit-VolumeBackup'
        'Mount-VolumeBackup'
        'New-BackupPolicy'
        'New-VolumeBackup'
        'Register-BackupRepository'
        'Register-BackupSchedule'
        'Remove-BackupPolicy'
        'Remove-VolumeBackup'
        'Restore-VolumeBackup'
        'Set-BackupPolicy'
        'Test-VolumeBackup'
        'Unregister-BackupRepository'
        'Unregister-BackupSchedule'
    )
    FunctionsToExport    = @()
    VariablesToExport    = @()
    AliasesToExport      = @()
    PrivateData          = @{
        PSData = @{
            Tags         = @('Backup', 'Restore', 'BlockDevice', 'Volume', 'OpenStack', 'Cinder', 'Ceph', 'Incremental', 'PSEdition_Core', 'Linux', 'Windows')
            LicenseUri   = 'https://github.com/blockbackup/BlockBackup/blob/main/LICENSE'
            ProjectUri   = 'https://github.com/blockbackup/BlockBackup'
            ReleaseNotes = '0.1.0: Cinder-compatible repositories in directories (posix/NFS), S3, Swift and Ceph RBD pools; full and incremental backups of image files, block devices and RBD images with reflink/LVM/RBD snapshots; single-pass verified chain restore; full and sampled verification; chain-aware retention (Limit-VolumeBackup); Cinder backup-export/import records; registered repositories with stored or environment secrets; backup policies (New/Get/Set/Remove/Invoke-BackupPolicy, Get-BackupPolicyStatus) run by a systemd timer, cron or a Scheduled Task (Register-BackupSchedule); the DSC resource BlockBackupPolicy, also a DSC v3 command resource (BlockBackup/BackupPolicy).'
        }
    }
}
