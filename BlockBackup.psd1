@{
    RootModule           = 'BlockBackup.dll'
    ModuleVersion        = '0.1.0'
    GUID                 = '5b0c7d4e-6a51-4f0b-9d3e-2c8f1a7e4b90'
    Author               = 'BlockBackup contributors'
    CompanyName          = 'BlockBackup contributors'
    Copyright            = '(c) BlockBackup contributors. All rights reserved.'
    Description          = 'Backs up and restores block volumes (image files, block devices) into OpenStack Cinder-compatible posix/NFS repositories: full and incremental chains, verification, Cinder backup records.'
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
            ReleaseNotes = '0.1.0: Cinder-compatible file/NFS repositories; full and incremental backups of image files and block devices with reflink/LVM snapshots; single-pass verified chain restore; verification; Cinder backup-export records.'
        }
    }
}
