#Requires -Version 7.4
#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')

    # Flips a byte in the middle of the backup's largest object (ObjectCorrupt or BlockHashMismatch on restore).
    function script:Add-ObjectDamage {
        param([string] $Container, [string] $Prefix)
        $object = Get-ChildItem -LiteralPath $Container -Filter "$Prefix-*" | Sort-Object Length -Descending | Select-Object -First 1
        $bytes = [System.IO.File]::ReadAllBytes($object.FullName)
        $bytes[[int]($bytes.Length / 2)] = $bytes[[int]($bytes.Length / 2)] -bxor 0xFF
        [System.IO.File]::WriteAllBytes($object.FullName, $bytes)
        $object
    }
}

AfterAll {
    Remove-Module BlockBackup -ErrorAction SilentlyContinue
}

Describe 'Restore-VolumeBackup and its restore path rules (file targets)' {
    BeforeAll {
        $script:repo = Join-Path $TestDrive 'restore'
        $script:vol = Join-Path $TestDrive 'restore.img'
        New-TestVolume -Path $vol -MiB 6 -Seed 4
        $script:full = New-VolumeBackup -Path $vol -Repository $repo
        $script:fullSha = Get-Sha $vol
        Edit-TestVolume -Path $vol -Seed 5
        $script:incr = New-VolumeBackup -Path $vol -Repository $repo -Incremental
        $script:incrSha = Get-Sha $vol
    }

    It 'restores a full backup by the Full path (rule FullBackup)' {
        $target = Join-Path $TestDrive 'full.img'
        $result = Restore-VolumeBackup -Repository $repo -BackupId $full.Id -TargetPath $target
        $result.Path | Should -Be 'Full'
        $result.Decision.Rule | Should -Be 'FullBackup'
        $result.ChainLength | Should -Be 1
        $result.TargetWasNew | Should -BeTrue
        Get-Sha $target | Should -Be $fullSha
    }

    It 'restores an incremental through its chain (rule IncrementalChain)' {
        $target = Join-Path $TestDrive 'chain.img'
        $result = $incr | Restore-VolumeBackup -TargetPath $target
        $result.Path | Should -Be 'Chain'
        $result.Decision.Rule | Should -Be 'IncrementalChain'
        $result.Decision.Reason | Should -Match '2 backups'
        $result.BlocksVerified | Should -Be (6MB / 32KB)
        Get-Sha $target | Should -Be $incrSha
    }

    It 'carries BackupId and Repository, so results pipe on (Restore | Test-VolumeBackup)' {
        $result = Restore-VolumeBackup $repo $incr.Id (Join-Path $TestDrive 'positional.img')   # Repository, BackupId, TargetPath
        $result.BackupId | Should -Be $incr.Id
        $result.Repository | Should -Be $incr.Repository
        ($result | Test-VolumeBackup).IsValid | Should -BeTrue
    }

    It 'says under -WhatIf that a target holding data would be refused without -Force' {
        $target = Join-Path $TestDrive 'whatif-dirty.img'
        New-TestVolume -Path $target -MiB 6 -Seed 13
        # What-if messages go to the host, not to a stream: read them from a child pwsh's output.
        $message = & $Pwsh -NoProfile -NonInteractive -Command "Import-Module '$ModuleManifest'; Restore-VolumeBackup -Repository '$repo' -BackupId $($incr.Id) -TargetPath '$target' -WhatIf" | Out-String
        $message | Should -Match 'refused without -Force'
    }

    It 'leaves no file under the target name (nor a temporary one) when a restore into a new file fails' {
        $copy = Join-Path $TestDrive 'failing-repo'
        Copy-Item -LiteralPath $repo -Destination $copy -Recurse
        $object = Add-ObjectDamage -Container (Join-Path $copy $full.Container) -Prefix $full.Prefix
        $dir = Join-Path $TestDrive "new-target-$([guid]::NewGuid())"
        New-Item -ItemType Directory -Path $dir | Out-Null
        $target = Join-Path $dir 'new.img'
        { Restore-VolumeBackup -Repository $copy -BackupId $full.Id -TargetPath $target -ErrorAction Stop } | Should -Throw -ExpectedMessage "*$($object.Name)*Nothing was put in place at '$target'."
        Get-ChildItem -LiteralPath $dir -Force | Should -BeNullOrEmpty
    }

    It 'says plainly that an existing target is partial when a restore into it fails' {
        $copy = Join-Path $TestDrive 'partial-repo'
        Copy-Item -LiteralPath $repo -Destination $copy -Recurse
        Add-ObjectDamage -Container (Join-Path $copy $full.Container) -Prefix $full.Prefix
        $target = Join-Path $TestDrive 'partial.img'
        New-TestVolume -Path $target -MiB 6 -Seed 14
        { Restore-VolumeBackup -Repository $copy -BackupId $full.Id -TargetPath $target -Force -Confirm:$false -ErrorAction Stop } |
            Should -Throw -ExpectedMessage '*is now PARTIAL*run the same restore again with -Force*'
        # The rerun the message asks for, from an intact repository, gives the backup exactly.
        Restore-VolumeBackup -Repository $repo -BackupId $full.Id -TargetPath $target -Force -Confirm:$false | Out-Null
        Get-Sha $target | Should -Be $fullSha
    }

    It 'shows the decision under -WhatIf and writes nothing' {
        $target = Join-Path $TestDrive 'whatif.img'
        Restore-VolumeBackup -Repository $repo -BackupId $incr.Id -TargetPath $target -WhatIf | Should -BeNullOrEmpty
        Test-Path $target | Should -BeFalse
    }

    It 'restores into an existing empty (sparse) file without -Force' {
        $target = Join-Path $TestDrive 'empty.img'
        $f = [System.IO.File]::Create($target); $f.SetLength(6MB); $f.Dispose()
        (Restore-VolumeBackup -Repository $repo -BackupId $full.Id -TargetPath $target).TargetWasNew | Should -BeTrue
        Get-Sha $target | Should -Be $fullSha
    }

    It 'refuses a target that holds data without -Force (TargetHasData) and leaves it untouched' {
        $target = Join-Path $TestDrive 'dirty.img'
        New-TestVolume -Path $target -MiB 7 -Seed 11
        $before = Get-Sha $target
        { Restore-VolumeBackup -Repository $repo -BackupId $incr.Id -TargetPath $target -ErrorAction Stop } | Should -Throw -ErrorId 'TargetHasData,BlockBackup.Commands.RestoreVolumeBackupCommand'
        Get-Sha $target | Should -Be $before
    }

    It 'restores exactly over a target that holds data with -Force, without prompting' {
        $target = Join-Path $TestDrive 'dirty2.img'
        New-TestVolume -Path $target -MiB 7 -Seed 12
        $result = Restore-VolumeBackup -Repository $repo -BackupId $incr.Id -TargetPath $target -Force -Confirm:$false
        $result.TargetWasNew | Should -BeFalse
        Get-Sha $target | Should -Be $incrSha
    }

    It 'restores only the first of several piped backups to one -TargetPath, even with -Force (TargetAlreadyRestored)' {
        $other = Join-Path $TestDrive 'other-volume.img'
        New-TestVolume -Path $other -MiB 3 -Seed 40
        $two = Join-Path $TestDrive 'two-volumes'
        $first = New-VolumeBackup -Path $vol -Repository $two
        $second = New-VolumeBackup -Path $other -Repository $two
        $target = Join-Path $TestDrive 'multi.img'
        $results = Get-VolumeBackup -Repository $two -Latest | Sort-Object Created | Restore-VolumeBackup -TargetPath $target -Force -Confirm:$false -ErrorAction SilentlyContinue -ErrorVariable err
        @($results).Count | Should -Be 1
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'TargetAlreadyRestored,*'
        $err[0].Exception.Message | Should -Match ([regex]::Escape("already received backup $($first.Id)"))
        Get-Sha $target | Should -Be (Get-Sha $vol)   # the first volume, not overwritten by the second
        $second.Id | Should -Not -Be $first.Id
    }

    It 'reports damaged data with ObjectCorrupt or BlockHashMismatch' {
        $copy = Join-Path $TestDrive 'damaged'
        Copy-Item -LiteralPath $repo -Destination $copy -Recurse
        $object = Get-ChildItem -LiteralPath (Join-Path $copy $full.Container) -Filter "$($full.Prefix)-*" | Sort-Object Length -Descending | Select-Object -First 1
        $bytes = [System.IO.File]::ReadAllBytes($object.FullName)
        $bytes[[int]($bytes.Length / 2)] = $bytes[[int]($bytes.Length / 2)] -bxor 0xFF
        [System.IO.File]::WriteAllBytes($object.FullName, $bytes)
        { Restore-VolumeBackup -Repository $copy -BackupId $full.Id -TargetPath (Join-Path $TestDrive 'bad.img') -ErrorAction Stop } |
            Should -Throw -ExpectedMessage "*$($object.Name)*"
        $verification = Test-VolumeBackup -Repository $copy -BackupId $full.Id
        $verification.IsValid | Should -BeFalse
        $verification.Issues.ObjectName | Should -Contain $object.Name
        Test-VolumeBackup -Repository $copy -BackupId $full.Id -Quiet | Should -BeFalse
        Test-VolumeBackup -Repository $repo -BackupId $incr.Id -IncludeChain -Quiet | Should -BeTrue
    }
}
