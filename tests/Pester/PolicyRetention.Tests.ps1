#Requires -Version 7.4
#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }
<#
    Whose backups a policy's retention may remove: by default only the backups the policy made
    (each records the policy in its metadata), so a policy started beside hand-made backups, as
    the README's first screen and its policy example make them, never deletes them;
    -RetainScope Volume hands the volume's whole history to the policy. Invoke-BackupPolicy
    -WhatIf shows the plan (full or incremental and why, what retention would remove and why).
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:savedConfig = $env:BLOCKBACKUP_CONFIG_DIR
    $env:BLOCKBACKUP_CONFIG_DIR = Join-Path $TestDrive 'config'

    # What -WhatIf says goes to the host, not to a stream: read it from a pwsh of its own.
    function script:Get-WhatIf([string] $Command) {
        & $Pwsh -NoProfile -NonInteractive -Command "Import-Module '$ModuleManifest'; $Command" 2>&1 | Out-String
    }
}

AfterAll {
    $env:BLOCKBACKUP_CONFIG_DIR = $script:savedConfig
    Remove-Module BlockBackup -ErrorAction SilentlyContinue
}

Describe 'A policy beside backups made by hand' {
    BeforeAll {
        $script:volume = Join-Path $TestDrive 'disk.img'
        New-TestVolume -Path $volume -MiB 2 -Seed 61
        $script:repo = Join-Path $TestDrive 'backups'
        # The README's first screen: a named full and two incrementals.
        $script:handMade = @(
            New-VolumeBackup -Path $volume -Repository $repo -Name first
            New-VolumeBackup -Path $volume -Repository $repo -Incremental
            New-VolumeBackup -Path $volume -Repository $repo -Incremental -Name second
        )
        # Every run a full (chains of one), keeping the last one: the policy's older backups go at each run.
        New-BackupPolicy -Name mine -Path $volume -Repository $repo -Schedule '0 2 * * *' -MaxChainLength 1 -KeepLast 1 | Out-Null
    }

    It 'keeps them all through its runs and prunes only its own backups, which record the policy' {
        $made = foreach ($run in 1..3) {
            Edit-TestVolume -Path $volume -Seed (70 + $run)
            $record = Invoke-BackupPolicy -Name mine -ErrorAction Stop
            $record.Succeeded | Should -BeTrue
            $record
        }
        $left = @(Get-VolumeBackup -Repository $repo)
        foreach ($b in $handMade) { $left.Id | Should -Contain $b.Id }
        $ours = @($left | Where-Object Policy -EQ 'mine')
        $ours.Id | Should -Be @($made[-1].BackupId)
        $made[1].Removed | Should -Be @($made[0].BackupId)
        @($left | Where-Object { $_.Id -in $handMade.Id -and $_.Policy }) | Should -BeNullOrEmpty
        (Test-VolumeBackup -Repository $repo -BackupId $handMade[-1].Id -IncludeChain).IsValid | Should -BeTrue
    }

    It 'shows under -WhatIf what the run would back up and what retention would remove, and does nothing' {
        $before = @(Get-VolumeBackup -Repository $repo).Id
        $ours = (Get-VolumeBackup -Repository $repo | Where-Object Policy -EQ 'mine').Id
        $said = Get-WhatIf 'Invoke-BackupPolicy -Name mine -WhatIf'
        $said | Should -Match 'full backup \('
        $said | Should -Match "retention would remove 1 backup: $ours \("
        $said | Should -Match 'only the policy''s own are subject to it'
        @(Get-VolumeBackup -Repository $repo).Id | Should -Be $before
    }

    It 'with -RetainScope Volume owns the volume''s whole history' {
        Set-BackupPolicy -Name mine -RetainScope Volume
        (Get-BackupPolicy -Name mine).RetainScope | Should -Be 'Volume'
        $said = Get-WhatIf 'Invoke-BackupPolicy -Name mine -WhatIf'
        $said | Should -Match 'retention would remove 4 backups'
        $record = Invoke-BackupPolicy -Name mine -ErrorAction Stop
        @(Get-VolumeBackup -Repository $repo).Id | Should -Be @($record.BackupId)
    }

    It 'takes a backup of an earlier version for its own by the name it gives them, and no other' {
        $other = Join-Path $TestDrive 'legacy.img'
        New-TestVolume -Path $other -MiB 1 -Seed 62
        $legacyRepo = Join-Path $TestDrive 'legacy'
        $legacy = New-VolumeBackup -Path $other -Repository $legacyRepo -Name 'old-20250101-020000'
        $lookalike = New-VolumeBackup -Path $other -Repository $legacyRepo -Name 'old-2025-manual'
        New-BackupPolicy -Name old -Path $other -Repository $legacyRepo -Schedule '0 2 * * *' -MaxChainLength 1 -KeepLast 1 | Out-Null
        $record = Invoke-BackupPolicy -Name old -ErrorAction Stop
        $record.Removed | Should -Be @($legacy.Id)
        @(Get-VolumeBackup -Repository $legacyRepo).Id | Should -Be @($lookalike.Id, $record.BackupId)
    }
}
