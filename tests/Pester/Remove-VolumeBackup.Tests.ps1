#Requires -Version 7.4
#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
}

AfterAll {
    Remove-Module BlockBackup -ErrorAction SilentlyContinue
}

Describe 'Remove-VolumeBackup' {
    BeforeEach {
        $script:repo = Join-Path $TestDrive ([guid]::NewGuid())
        $script:vol = Join-Path $TestDrive "rm-$([guid]::NewGuid()).img"
        New-TestVolume -Path $vol -MiB 2 -Seed 6
        $script:full = New-VolumeBackup -Path $vol -Repository $repo
        Edit-TestVolume -Path $vol -Seed 7
        $script:incr = New-VolumeBackup -Path $vol -Repository $repo -Incremental
    }

    It 'refuses to delete a backup with dependents (BackupHasDependents)' {
        { Remove-VolumeBackup -Repository $repo -BackupId $full.Id -Confirm:$false -ErrorAction Stop } |
            Should -Throw -ErrorId 'BackupHasDependents,BlockBackup.Commands.RemoveVolumeBackupCommand'
        @(Get-VolumeBackup -Repository $repo).Count | Should -Be 2
    }

    It 'deletes nothing under -WhatIf' {
        $full | Remove-VolumeBackup -IncludeDependents -WhatIf
        @(Get-VolumeBackup -Repository $repo).Count | Should -Be 2
    }

    It 'deletes a backup and its dependents, newest first, with -PassThru' {
        $removed = $full | Remove-VolumeBackup -IncludeDependents -Confirm:$false -PassThru
        $removed.Id | Should -Be @($incr.Id, $full.Id)
        Get-VolumeBackup -Repository $repo | Should -BeNullOrEmpty
    }

    It 'removes a piped chain newest first, without -IncludeDependents' {
        $removed = $incr | Get-BackupChain | Remove-VolumeBackup -Confirm:$false -PassThru
        $removed.Id | Should -Be @($incr.Id, $full.Id)
        Get-VolumeBackup -Repository $repo | Should -BeNullOrEmpty
    }

    It 'is not an error when an earlier item of the same call already removed a backup' {
        $ErrorActionPreference = 'Stop'
        $removed = Get-VolumeBackup -Repository $repo | Remove-VolumeBackup -IncludeDependents -Confirm:$false -PassThru
        $removed.Id | Should -Be @($incr.Id, $full.Id)
        Get-VolumeBackup -Repository $repo | Should -BeNullOrEmpty
    }

    It 'still reports a backup that is not there at all (BackupNotFound)' {
        { Remove-VolumeBackup -Repository $repo -BackupId ([guid]::NewGuid()) -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'BackupNotFound,*'
    }

    It 'takes Repository and BackupId by position' {
        Remove-VolumeBackup $repo $incr.Id -Confirm:$false
        (Get-VolumeBackup $repo).Id | Should -Be @($full.Id)
    }

    It 'runs in a non-interactive session with -Confirm:$false' {
        & $Pwsh -NoProfile -NonInteractive -Command "Import-Module '$ModuleManifest'; Remove-VolumeBackup -Repository '$repo' -BackupId $($incr.Id) -Confirm:`$false -ErrorAction Stop"
        $LASTEXITCODE | Should -Be 0
        (Get-VolumeBackup -Repository $repo).Id | Should -Be @($full.Id)
    }

    It 'removes the leftovers of interrupted backups with -Incomplete' {
        $leftover = Join-Path $repo 'ab/cd/abcdabcd-0000-0000-0000-000000000000'
        New-Item -ItemType Directory -Path $leftover | Out-Null
        $prefix = "volume_$($full.VolumeId)_20260101000000_backup_abcdabcd-0000-0000-0000-000000000000"
        Set-Content -LiteralPath (Join-Path $leftover "$prefix-00001") -Value 'partial'
        (Get-VolumeBackup -Repository $repo -IncludeIncomplete | Where-Object Status -EQ 'Incomplete').Count | Should -Be 1

        # Not BlockBackup's and fresh: perhaps Cinder is writing it now, so it is kept (with a warning saying how to override).
        $kept = Remove-VolumeBackup -Repository $repo -Incomplete -Confirm:$false -PassThru -WarningVariable warnings -WarningAction SilentlyContinue
        $kept | Should -BeNullOrEmpty
        "$warnings" | Should -BeLike 'Kept 1 incomplete backup that BlockBackup did not write and that is younger than *Cinder may be writing them right now*-MinimumAge 0*'
        Test-Path $leftover | Should -BeTrue

        # Once older than the minimum age (a day by default) it goes.
        (Get-Item -LiteralPath $leftover).LastWriteTimeUtc = [datetime]::UtcNow.AddDays(-2)
        $removed = Remove-VolumeBackup -Repository $repo -Incomplete -Confirm:$false -PassThru
        $removed.Container | Should -Be ([System.IO.Path]::Combine('ab', 'cd', 'abcdabcd-0000-0000-0000-000000000000'))
        Test-Path $leftover | Should -BeFalse
        @(Get-VolumeBackup -Repository $repo).Count | Should -Be 2
    }
}
