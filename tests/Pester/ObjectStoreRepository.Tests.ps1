#Requires -Version 7.4
#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }

# S3 and Swift repositories through the cmdlets, on the real RADOS Gateway that .ci/run starts
# (tests/ceph/rgw-start.sh): registered repositories, every cmdlet, Cinder's layout, faults.

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
}

AfterAll {
    Remove-Module BlockBackup -ErrorAction SilentlyContinue
}

$rgwMissing = -not ($env:BLOCKBACKUP_S3_ENDPOINT -and $env:BLOCKBACKUP_S3_ACCESS_KEY -and $env:BLOCKBACKUP_S3_SECRET_KEY -and
    $env:BLOCKBACKUP_SWIFT_AUTH_URL -and $env:BLOCKBACKUP_SWIFT_USER -and $env:BLOCKBACKUP_SWIFT_KEY)

Describe 'Object-storage repositories (<Kind>)' -Skip:$rgwMissing -ForEach @(
    @{ Kind = 's3' }
    @{ Kind = 'swift' }
) {
    BeforeAll {
        $script:savedConfig = $env:BLOCKBACKUP_CONFIG_DIR
        $env:BLOCKBACKUP_CONFIG_DIR = Join-Path $TestDrive "config-$Kind"
        $script:bucket = "pester-$Kind-$(([guid]::NewGuid().ToString('N')).Substring(0, 10))"
        $script:name = "offsite-$Kind"
        if ($Kind -eq 's3') {
            $secret = ConvertTo-SecureString $env:BLOCKBACKUP_S3_SECRET_KEY -AsPlainText -Force
            $credential = [pscredential]::new($env:BLOCKBACKUP_S3_ACCESS_KEY, $secret)
            Register-BackupRepository -Name $name -Uri "s3://$bucket" -Endpoint $env:BLOCKBACKUP_S3_ENDPOINT -Credential $credential
        }
        else {
            $secret = ConvertTo-SecureString $env:BLOCKBACKUP_SWIFT_KEY -AsPlainText -Force
            $credential = [pscredential]::new($env:BLOCKBACKUP_SWIFT_USER, $secret)
            Register-BackupRepository -Name $name -Uri "swift://$bucket" -Endpoint $env:BLOCKBACKUP_SWIFT_AUTH_URL -Credential $credential -WarningAction SilentlyContinue
        }

        $script:volume = Join-Path $TestDrive "$Kind-disk.img"
        New-TestVolume -Path $volume -MiB 6 -Seed 61
        $script:fullSha = Get-Sha $volume
        $script:full = New-VolumeBackup -Path $volume -Repository $name -Name "full-$Kind" -ObjectSize 1MB
        Edit-TestVolume -Path $volume -Seed 62
        $script:incrSha = Get-Sha $volume
        $script:incr = New-VolumeBackup -Path $volume -Repository $name -Incremental -Name "incr-$Kind" -ObjectSize 1MB
    }

    AfterAll {
        Get-VolumeBackup -Repository $name -ErrorAction SilentlyContinue | Sort-Object CreatedUtc -Descending |
            Remove-VolumeBackup -IncludeDependents -Confirm:$false -ErrorAction SilentlyContinue
        $env:BLOCKBACKUP_CONFIG_DIR = $savedConfig
    }

    It 'backs up into Cinder''s object layout under the registered name' {
        $full.Repository | Should -Be "${Kind}://$bucket"
        $full.Container | Should -Be $bucket
        $full.Prefix | Should -Match "^volume_$($full.VolumeId)/\d{14}/az_nova_backup_$($full.Id)$"
        $incr.ParentId | Should -Be $full.Id
        $incr.StoredBytes | Should -BeLessThan ($full.StoredBytes / 2)
    }

    It 'lists, chains, restores (full and chain) and verifies' {
        (Get-VolumeBackup -Repository $name).Id | Should -Be @($full.Id, $incr.Id)
        (Get-BackupChain -Repository $name -BackupId $incr.Id).Id | Should -Be @($full.Id, $incr.Id)
        $out = Join-Path $TestDrive "$Kind-full.img"
        Restore-VolumeBackup -Repository $name -BackupId $full.Id -TargetPath $out | Out-Null
        Get-Sha $out | Should -Be $fullSha
        $out2 = Join-Path $TestDrive "$Kind-incr.img"
        $result = Restore-VolumeBackup -Repository $name -BackupId $incr.Id -TargetPath $out2
        $result.Path | Should -Be 'Chain'
        Get-Sha $out2 | Should -Be $incrSha
        (Test-VolumeBackup -Repository $name -BackupId $incr.Id -IncludeChain).IsValid | Should -BeTrue
    }

    It 'takes a backup piped from the registered repository (its URL names the registration)' {
        $out = Join-Path $TestDrive "$Kind-piped.img"
        Get-VolumeBackup -Repository $name | Select-Object -First 1 | Restore-VolumeBackup -TargetPath $out | Out-Null
        Get-Sha $out | Should -Be $fullSha
        (Get-VolumeBackup -Repository "${Kind}://$bucket").Id | Should -Be @($full.Id, $incr.Id)
    }

    It 'works by URL too, with the connection from the environment' {
        $saved = @{}
        $savedConfig = $env:BLOCKBACKUP_CONFIG_DIR
        $env:BLOCKBACKUP_CONFIG_DIR = Join-Path $TestDrive "no-registrations-$Kind"   # nothing registered: the environment alone
        $vars = if ($Kind -eq 's3') {
            @{ AWS_ENDPOINT_URL = $env:BLOCKBACKUP_S3_ENDPOINT; AWS_ACCESS_KEY_ID = $env:BLOCKBACKUP_S3_ACCESS_KEY; AWS_SECRET_ACCESS_KEY = $env:BLOCKBACKUP_S3_SECRET_KEY }
        } else {
            @{ ST_AUTH = $env:BLOCKBACKUP_SWIFT_AUTH_URL; ST_USER = $env:BLOCKBACKUP_SWIFT_USER; ST_KEY = $env:BLOCKBACKUP_SWIFT_KEY }
        }
        foreach ($k in $vars.Keys) { $saved[$k] = [Environment]::GetEnvironmentVariable($k); [Environment]::SetEnvironmentVariable($k, $vars[$k]) }
        try {
            (Get-VolumeBackup -Repository "${Kind}://$bucket").Id | Should -Be @($full.Id, $incr.Id)
        }
        finally {
            foreach ($k in $vars.Keys) { [Environment]::SetEnvironmentVariable($k, $saved[$k]) }
            $env:BLOCKBACKUP_CONFIG_DIR = $savedConfig
        }
    }

    It 'takes <Kind>:// alone as Cinder''s default container, volumebackups' {
        $defaultName = "cinder-default-$Kind"
        $endpoint = if ($Kind -eq 's3') { $env:BLOCKBACKUP_S3_ENDPOINT } else { $env:BLOCKBACKUP_SWIFT_AUTH_URL }
        $credential = if ($Kind -eq 's3') {
            [pscredential]::new($env:BLOCKBACKUP_S3_ACCESS_KEY, (ConvertTo-SecureString $env:BLOCKBACKUP_S3_SECRET_KEY -AsPlainText -Force))
        } else {
            [pscredential]::new($env:BLOCKBACKUP_SWIFT_USER, (ConvertTo-SecureString $env:BLOCKBACKUP_SWIFT_KEY -AsPlainText -Force))
        }
        Register-BackupRepository -Name $defaultName -Uri "${Kind}://" -Endpoint $endpoint -Credential $credential -WarningAction SilentlyContinue
        $small = Join-Path $TestDrive "$Kind-default.img"
        New-TestVolume -Path $small -MiB 1 -Seed 63
        try {
            $backup = New-VolumeBackup -Path $small -Repository $defaultName
            $backup.Container | Should -Be 'volumebackups'
            $backup.Repository | Should -Be "${Kind}://volumebackups"
            $out = Join-Path $TestDrive "$Kind-default-out.img"
            Restore-VolumeBackup -Repository $defaultName -BackupId $backup.Id -TargetPath $out | Out-Null
            Get-Sha $out | Should -Be (Get-Sha $small)
        }
        finally {
            if ($backup) { Remove-VolumeBackup -Repository $defaultName -BackupId $backup.Id -Confirm:$false }
            Unregister-BackupRepository -Name $defaultName
        }
    }

    It 'says a missing <Kind> bucket or container does not exist for every cmdlet but the first backup, which creates it (issue 18, item 11)' {
        $missing = "missing-$bucket"
        $endpoint = if ($Kind -eq 's3') { $env:BLOCKBACKUP_S3_ENDPOINT } else { $env:BLOCKBACKUP_SWIFT_AUTH_URL }
        $credential = if ($Kind -eq 's3') {
            [pscredential]::new($env:BLOCKBACKUP_S3_ACCESS_KEY, (ConvertTo-SecureString $env:BLOCKBACKUP_S3_SECRET_KEY -AsPlainText -Force))
        } else {
            [pscredential]::new($env:BLOCKBACKUP_SWIFT_USER, (ConvertTo-SecureString $env:BLOCKBACKUP_SWIFT_KEY -AsPlainText -Force))
        }
        Register-BackupRepository -Name "missing-$Kind" -Uri "${Kind}://$missing" -Endpoint $endpoint -Credential $credential -WarningAction SilentlyContinue
        $r = "missing-$Kind"
        $id = [guid]::NewGuid()
        $verbs = [ordered]@{
            'Get-VolumeBackup'                = { Get-VolumeBackup -Repository $r -ErrorAction Stop }
            'Get-VolumeBackup -IncludeIncomplete' = { Get-VolumeBackup -Repository $r -IncludeIncomplete -ErrorAction Stop }
            'Get-BackupChain'                 = { Get-BackupChain -Repository $r -BackupId $id -ErrorAction Stop }
            'Test-VolumeBackup'               = { Test-VolumeBackup -Repository $r -BackupId $id -ErrorAction Stop }
            'Restore-VolumeBackup'            = { Restore-VolumeBackup -Repository $r -BackupId $id -TargetPath (Join-Path $TestDrive "$Kind-missing.img") -ErrorAction Stop }
            'Remove-VolumeBackup'             = { Remove-VolumeBackup -Repository $r -BackupId $id -Confirm:$false -ErrorAction Stop }
            'Remove-VolumeBackup -Incomplete' = { Remove-VolumeBackup -Repository $r -Incomplete -Confirm:$false -ErrorAction Stop }
            'Limit-VolumeBackup'              = { Limit-VolumeBackup -Repository $r -KeepLast 1 -Confirm:$false -ErrorAction Stop }
            'Export-VolumeBackupRecord'       = { Export-VolumeBackupRecord -Repository $r -BackupId $id -ErrorAction Stop }
        }
        foreach ($verb in $verbs.Keys) {
            $err = $verbs[$verb] | Should -Throw -PassThru -Because $verb
            $err.FullyQualifiedErrorId | Should -BeLike 'ObjectStoreContainerNotFound,*' -Because $verb
            $err.Exception.Message | Should -BeLike "*'${Kind}://$missing' does not exist*the first backup into the repository (New-VolumeBackup) creates it*" -Because $verb
        }
        # None of them created it; the first backup does, and then everything works.
        $first = New-VolumeBackup -Path $volume -Repository $r -ObjectSize 1MB
        try {
            (Get-VolumeBackup -Repository $r).Id | Should -Be @($first.Id)
            (Test-VolumeBackup -Repository $r -BackupId $first.Id).IsValid | Should -BeTrue
        }
        finally {
            Remove-VolumeBackup -Repository $r -BackupId $first.Id -Confirm:$false
            Unregister-BackupRepository -Name $r
        }
    }

    It 'says what is missing for an unregistered URL without connection settings' {
        $err = { Get-VolumeBackup -Repository "${Kind}://other-$bucket" -ErrorAction Stop } | Should -Throw -PassThru
        $err.FullyQualifiedErrorId | Should -BeLike 'ObjectStoreConnectionMissing*'
        $err.Exception.Message | Should -BeLike '*Register-BackupRepository*'
    }

    It 'exports the record Cinder''s <Kind> service imports' {
        $record = Export-VolumeBackupRecord -Repository $name -BackupId $incr.Id
        $record.BackupService | Should -Be $(if ($Kind -eq 's3') { 'cinder.backup.drivers.s3.S3BackupDriver' } else { 'cinder.backup.drivers.swift.SwiftBackupDriver' })
        $row = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($record.BackupUrl)) | ConvertFrom-Json
        $row.container | Should -Be $bucket
        $row.service_metadata | Should -Be $incr.Prefix
        $row.parent_id | Should -Be $full.Id
        # And back: the record imports into the repository that holds the backup (Cinder's backup-import check).
        ($record | Import-VolumeBackupRecord -Repository $name).Id | Should -Be $incr.Id
        $posix = Export-VolumeBackupRecord -Repository $name -BackupId $incr.Id
        { Import-VolumeBackupRecord -Repository $name -BackupService 'cinder.backup.drivers.posix.PosixBackupDriver' -BackupUrl $posix.BackupUrl -ErrorAction Stop } |
            Should -Throw -ErrorId 'UnsupportedBackupService*'
    }

    It 'ignores planted names: a stray one with a warning naming it, an in-flight record reusing the newest id without a twin (issue 18, items 8 and 3)' {
        # Planted through the store itself, as anyone who may write the bucket could.
        $location = [BlockBackup.Engine.Repository.RepositoryLocation]::Parse($name, [Func[string, string]] { param($p) $p }, $null)
        $store = [BlockBackup.Engine.Repository.RepositoryFactory]::Open($location, [Func[BlockBackup.Engine.Rbd.RbdClient]] { $null }, $false)
        function Put([string] $Key, [string] $Text) {
            $bytes = [Text.Encoding]::UTF8.GetBytes($Text)
            $store.Store.PutAsync($Key, [IO.MemoryStream]::new($bytes), $bytes.Length, [BlockBackup.Engine.ObjectStores.PutOptions]::Default, [Threading.CancellationToken]::None).GetAwaiter().GetResult()
        }
        $stray = "volume_$($full.VolumeId)/99999999999999/az_nova_backup_$([guid]::NewGuid())_metadata"
        $record = ".blockbackup/inflight/$($incr.Id).json"
        $forgedPrefix = "volume_$($incr.VolumeId)/20260101000000/az_nova_backup_$($incr.Id)"
        try {
            Put $stray '{}'
            Put $record "{`"backup_id`":`"$($incr.Id)`",`"volume_id`":`"$($incr.VolumeId)`",`"prefix`":`"$forgedPrefix`",`"started`":`"2026-01-01T00:00:00Z`",`"host`":`"elsewhere`",`"pid`":4242}"

            $listed = @(Get-VolumeBackup -Repository $name -IncludeIncomplete -WarningVariable warnings -WarningAction SilentlyContinue)
            $listed.Id | Should -Be @($full.Id, $incr.Id)
            $listed.Status | Should -Be @('Available', 'Available')
            $warnings.Count | Should -Be 1
            $warnings[0].Message | Should -BeLike "*'${Kind}://$bucket/$($stray -replace '_metadata$', '')*' (the time '99999999999999' is not a date)*"

            $decisions = @(Limit-VolumeBackup -Repository $name -KeepLast 1 -RemoveDamaged -Confirm:$false -WarningAction SilentlyContinue)
            $decisions.Action | Should -Be @('Keep', 'Keep')
            (Get-VolumeBackup -Repository $name -WarningAction SilentlyContinue).Id | Should -Be @($full.Id, $incr.Id)
            $out = Join-Path $TestDrive "$Kind-after-forgery.img"
            Restore-VolumeBackup -Repository $name -BackupId $incr.Id -TargetPath $out -WarningAction SilentlyContinue | Out-Null
            Get-Sha $out | Should -Be $incrSha

            # A leftover is named by its objects' prefix, not by the bucket (issue 18, finding 15).
            $leftover = [guid]::NewGuid()
            $leftoverPrefix = "volume_$($full.VolumeId)/20260101000000/az_nova_backup_$leftover"
            Put "$leftoverPrefix-00001" 'x'
            $verbose = @(Remove-VolumeBackup -Repository $name -Incomplete -MinimumAge 0 -Confirm:$false -Verbose -WarningAction SilentlyContinue 4>&1 | ForEach-Object Message)
            $verbose | Should -Contain "Removed incomplete backup $leftover (${Kind}://$bucket/$leftoverPrefix*)."
            (Get-VolumeBackup -Repository $name -IncludeIncomplete -WarningAction SilentlyContinue).Id | Should -Be @($full.Id, $incr.Id)
        }
        finally {
            $store.Store.DeleteAsync($stray, [Threading.CancellationToken]::None).GetAwaiter().GetResult()
            $store.Store.DeleteAsync($record, [Threading.CancellationToken]::None).GetAwaiter().GetResult()
            $store.Dispose()
        }
    }

    It 'refuses to remove a parent, then removes chain-aware and applies retention' {
        { Remove-VolumeBackup -Repository $name -BackupId $full.Id -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'BackupHasDependents*'
        Edit-TestVolume -Path $volume -Seed 63
        $third = New-VolumeBackup -Path $volume -Repository $name -Name "full2-$Kind" -ObjectSize 1MB
        $decisions = @(Limit-VolumeBackup -Repository $name -KeepLast 1 -Confirm:$false)
        @($decisions | Where-Object Action -NE Keep).BackupId | Sort-Object | Should -Be (@($full.Id, $incr.Id) | Sort-Object)
        (Get-VolumeBackup -Repository $name).Id | Should -Be @($third.Id)
        $out = Join-Path $TestDrive "$Kind-third.img"
        Restore-VolumeBackup -Repository $name -BackupId $third.Id -TargetPath $out | Out-Null
        Get-Sha $out | Should -Be (Get-Sha $volume)
    }

    It 'fails clearly on wrong credentials and leaves the backups alone' {
        $bad = [pscredential]::new($(if ($Kind -eq 's3') { $env:BLOCKBACKUP_S3_ACCESS_KEY } else { $env:BLOCKBACKUP_SWIFT_USER }), (ConvertTo-SecureString 'wrong-secret' -AsPlainText -Force))
        $endpoint = if ($Kind -eq 's3') { $env:BLOCKBACKUP_S3_ENDPOINT } else { $env:BLOCKBACKUP_SWIFT_AUTH_URL }
        # Under a prefix of the same bucket: its own location and endpoint may have only one name.
        Register-BackupRepository -Name "bad-$Kind" -Uri "${Kind}://$bucket/bad-credentials" -Endpoint $endpoint -Credential $bad -WarningAction SilentlyContinue
        $err = { Get-VolumeBackup -Repository "bad-$Kind" -ErrorAction Stop } | Should -Throw -PassThru
        $err.FullyQualifiedErrorId | Should -BeLike 'ObjectStoreAuthenticationFailed*'
        $err.Exception.Message | Should -Not -BeLike '*wrong-secret*'
        @(Get-VolumeBackup -Repository $name).Count | Should -Be 1
    }
}
