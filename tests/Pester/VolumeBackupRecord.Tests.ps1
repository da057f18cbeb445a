#Requires -Version 7.4
#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
}

AfterAll {
    Remove-Module BlockBackup -ErrorAction SilentlyContinue
}

Describe 'Export-VolumeBackupRecord and Import-VolumeBackupRecord' {
    BeforeAll {
        $script:repo = Join-Path $TestDrive 'records'
        $script:vol = Join-Path $TestDrive 'records.img'
        New-TestVolume -Path $vol -MiB 2 -Seed 8
        $script:backup = New-VolumeBackup -Path $vol -Repository $repo -Name exported
    }

    It 'writes the record as cinder backup-export does' {
        $record = $backup | Export-VolumeBackupRecord -BackupService cinder.backup.drivers.nfs.NFSBackupDriver
        $record.BackupService | Should -Be 'cinder.backup.drivers.nfs.NFSBackupDriver'
        $row = [System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String($record.BackupUrl)) | ConvertFrom-Json
        $row.id | Should -Be $backup.Id.ToString()
        $row.service_metadata | Should -Be $backup.Prefix
        $row.container | Should -Be ($backup.Container -replace '\\', '/')
        $row.display_name | Should -Be 'exported'
        $row.size | Should -Be 1
        $row.status | Should -Be 'available'
    }

    It 'runs help example 1 as written (with this repository for /mnt/nfs/backups): a record per backup of the chain, full first' {
        New-TestVolume -Path $vol -MiB 2 -Seed 9
        $incremental = New-VolumeBackup -Path $vol -Repository $repo -Incremental
        $example = (Get-Help Export-VolumeBackupRecord -Examples).examples.example[0].code
        $example | Should -BeLike 'Get-VolumeBackup -Repository /mnt/nfs/backups *'
        $records = @(& ([scriptblock]::Create($example.Replace('/mnt/nfs/backups', "'$repo'"))))
        $records.Count | Should -Be 2
        $ids = $records | ForEach-Object { ([System.Text.Encoding]::UTF8.GetString([System.Convert]::FromBase64String($_.BackupUrl)) | ConvertFrom-Json).id }
        $ids | Should -Be @($backup.Id.ToString(), $incremental.Id.ToString())
    }

    It 'imports a record whose files are in the repository, and explains what to copy when not' {
        $record = Export-VolumeBackupRecord -Repository $repo -BackupId $backup.Id
        ($record | Import-VolumeBackupRecord -Repository $repo).Id | Should -Be $backup.Id
        $elsewhere = Join-Path $TestDrive 'empty-repo'
        New-Item -ItemType Directory -Path $elsewhere | Out-Null
        { $record | Import-VolumeBackupRecord -Repository $elsewhere -ErrorAction Stop } | Should -Throw -ErrorId 'BackupFilesNotFound*'
        { Import-VolumeBackupRecord -Repository $repo -BackupService x.posix -BackupUrl 'not base64!' -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidBackupRecord*'
    }

    It 'accepts the snake_case properties of cinder backup-export -f json' {
        $record = Export-VolumeBackupRecord -Repository $repo -BackupId $backup.Id
        $cinderJson = [pscustomobject]@{ backup_service = $record.BackupService; backup_url = $record.BackupUrl }
        ($cinderJson | Import-VolumeBackupRecord -Repository $repo).Name | Should -Be 'exported'
    }
}
