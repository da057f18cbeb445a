#Requires -Version 7.4
#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }
<#
    Storage faults as users meet them: a full repository file system and a read-only one (small
    tmpfs mounts, so these need root on Linux, as CI runs).
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')

    function script:Mount-SmallFileSystem {
        param([string] $Path, [string] $Size)
        New-Item -ItemType Directory -Force -Path $Path | Out-Null
        & mount -t tmpfs -o "size=$Size" tmpfs $Path
        if ($LASTEXITCODE -ne 0) { throw "mount tmpfs at $Path failed" }
    }
}

AfterAll {
    Remove-Module BlockBackup -ErrorAction SilentlyContinue
}

Describe 'A full repository file system' -Skip:(-not $IsLinux -or [Environment]::UserName -ne 'root') {
    BeforeAll {
        $script:mount = Join-Path $TestDrive 'full'
        Mount-SmallFileSystem -Path $mount -Size 2m
        $script:repo = Join-Path $mount 'repo'
        $script:small = Join-Path $TestDrive 'small.img'
        [System.IO.File]::WriteAllBytes($small, [byte[]]::new(64KB))
        $script:first = New-VolumeBackup -Path $small -Repository $repo
        $script:big = Join-Path $TestDrive 'random.img'
        $bytes = [byte[]]::new(3MB); [System.Random]::new(7).NextBytes($bytes); [System.IO.File]::WriteAllBytes($big, $bytes)
    }

    AfterAll {
        & umount $mount
    }

    It 'says the file system is full (DiskFull), leaves no lock and keeps the earlier backup' {
        New-VolumeBackup -Path $big -Repository $repo -Compression none -ErrorAction SilentlyContinue -ErrorVariable err | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'DiskFull,*'
        $err[0].Exception.Message | Should -Match 'file system is full'
        Get-ChildItem -LiteralPath (Join-Path $repo '.blockbackup/locks') -Force | Should -BeNullOrEmpty
        (Get-VolumeBackup -Repository $repo -IncludeIncomplete).Id | Should -Be @($first.Id)
        (Test-VolumeBackup -Repository $repo -BackupId $first.Id).IsValid | Should -BeTrue
    }

    It 'says so when not even the lock can be written, and the next backup does not wait for that lock' {
        $filler = [System.IO.File]::OpenWrite((Join-Path $mount 'filler'))
        try { $filler.Write([byte[]]::new(4MB)) } catch [System.IO.IOException] { } finally { $filler.Dispose() }
        $clock = [System.Diagnostics.Stopwatch]::StartNew()
        New-VolumeBackup -Path $small -Repository $repo -ErrorAction SilentlyContinue -ErrorVariable err | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'DiskFull,*'
        Get-ChildItem -LiteralPath (Join-Path $repo '.blockbackup/locks') -Force | Should -BeNullOrEmpty
        Remove-Item -LiteralPath (Join-Path $mount 'filler')
        (New-VolumeBackup -Path $small -Repository $repo -LockTimeoutSeconds 30).Status | Should -Be 'Available'
        $clock.Elapsed.TotalSeconds | Should -BeLessThan 20 -Because 'no 0-byte lock is left to wait for'
    }
}

Describe 'A restore that fills its file system' -Skip:(-not $IsLinux -or [Environment]::UserName -ne 'root') {
    BeforeAll {
        $script:mount = Join-Path $TestDrive 'small-target'
        Mount-SmallFileSystem -Path $mount -Size 1m
        $script:vol = Join-Path $TestDrive 'random4.img'
        $bytes = [byte[]]::new(4MB); [System.Random]::new(11).NextBytes($bytes); [System.IO.File]::WriteAllBytes($vol, $bytes)
        $script:repo = Join-Path $TestDrive 'fill-repo'
        $script:backup = New-VolumeBackup -Path $vol -Repository $repo -Compression none
    }

    AfterAll {
        & umount $mount
    }

    It 'names the target (not only its hidden temporary) and puts nothing in place' {
        $target = Join-Path $mount 'restored.img'
        Restore-VolumeBackup -Repository $repo -BackupId $backup.Id -TargetPath $target -ErrorAction SilentlyContinue -ErrorVariable err | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'DiskFull,*'
        $err[0].Exception.Message | Should -BeLike "Writing the restore target '$target': the file system is full*Nothing was put in place."
        $err[0].TargetObject | Should -Be $target
        Get-ChildItem -LiteralPath $mount -Force | Should -BeNullOrEmpty
    }
}

Describe 'A read-only repository' -Skip:(-not $IsLinux -or [Environment]::UserName -ne 'root') {
    BeforeAll {
        $script:mount = Join-Path $TestDrive 'ro'
        Mount-SmallFileSystem -Path $mount -Size 8m
        $script:repo = Join-Path $mount 'repo'
        $script:vol = Join-Path $TestDrive 'ro.img'
        New-TestVolume -Path $vol -MiB 2 -Seed 50
        $script:backup = New-VolumeBackup -Path $vol -Repository $repo
        & mount -o remount,ro $mount
    }

    AfterAll {
        & umount $mount
    }

    It 'lists, verifies and restores' {
        (Get-VolumeBackup -Repository $repo).Id | Should -Be @($backup.Id)
        (Test-VolumeBackup -Repository $repo -BackupId $backup.Id).IsValid | Should -BeTrue
        $target = Join-Path $TestDrive 'from-ro.img'
        Restore-VolumeBackup -Repository $repo -BackupId $backup.Id -TargetPath $target | Out-Null
        Get-Sha $target | Should -Be (Get-Sha $vol)
    }

    It 'says it is read-only when asked to write (ReadOnlyFileSystem)' {
        New-VolumeBackup -Path $vol -Repository $repo -ErrorAction SilentlyContinue -ErrorVariable err | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'ReadOnlyFileSystem,*'
        $err[0].Exception.Message | Should -Match 'read-only'
    }
}
