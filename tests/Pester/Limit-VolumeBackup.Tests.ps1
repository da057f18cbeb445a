#Requires -Version 7.4
#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }
<#
    Limit-VolumeBackup end to end on a file repository: -AsOf previews, -WhatIf, real removal
    leaving exactly the expected backups, every retained backup restoring byte-identically, chains
    kept, damaged backups reported. The calendar rules are covered by the xunit tables
    (RetentionPlannerTests); here the clock-relative rules are KeepLast and KeepWithin with -AsOf.
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')

    # A small volume of random bytes; each version differs in a few scattered places.
    function script:Set-TestVolume {
        param([string] $Path, [int] $Version)
        $data = [byte[]]::new(2MB)
        [System.Random]::new(42).NextBytes($data)
        $rnd = [System.Random]::new($Version)
        foreach ($n in 1..($Version * 3)) {
            $data[$rnd.Next(0, $data.Length)] = [byte]$rnd.Next(0, 256)
        }
        [System.IO.File]::WriteAllBytes($Path, $data)
    }

    function script:Get-Sha { param([string] $Path) (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash }

    # full1 <- inc2 <- inc3, full4 <- inc5: two chains, oldest first; the hash of each version kept.
    function script:New-TwoChains {
        param([string] $Repository, [string] $Volume)
        $hashes = @{}
        $made = foreach ($v in 1..5) {
            Set-TestVolume -Path $Volume -Version $v
            $incremental = $v -in 2, 3, 5
            $b = New-VolumeBackup -Path $Volume -Repository $Repository -Name "v$v" -Incremental:$incremental -Force
            $hashes[$b.Id] = Get-Sha $Volume
            $b
        }
        [pscustomobject]@{ Backups = @($made); Hashes = $hashes }
    }

    function script:Get-Names { param([string] $Repository) @(Get-VolumeBackup -Repository $Repository -IncludeIncomplete | ForEach-Object Name | Sort-Object) }
}

AfterAll {
    Remove-Module BlockBackup -ErrorAction SilentlyContinue
}

Describe 'Limit-VolumeBackup on a file repository' {
    BeforeEach {
        $script:repo = Join-Path $TestDrive "repo-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
        $script:volume = Join-Path $TestDrive 'disk.img'
        $script:made = New-TwoChains -Repository $repo -Volume $volume
    }

    It 'emits one decision per backup, with reasons, and -WhatIf removes nothing' {
        $decisions = @(Limit-VolumeBackup -Repository $repo -KeepLast 2 -WhatIf)

        $decisions.Count | Should -Be 5
        $decisions[0].GetType().FullName | Should -Be 'BlockBackup.Engine.Policies.RetentionDecision'
        ($decisions | Where-Object Action -EQ Keep).Backup.Name | Sort-Object | Should -Be @('v4', 'v5')
        ($decisions | Where-Object { $_.Backup.Name -eq 'v5' }).Reasons | Should -Be @('last 1', 'newest available backup of the volume')
        ($decisions | Where-Object { $_.Backup.Name -eq 'v4' }).Reasons | Should -Be @('last 2', "needed by $($made.Backups[4].Id)")
        ($decisions | Where-Object { $_.Backup.Name -eq 'v1' }).Reasons | Should -Be @('no rule keeps it')
        @($decisions | Where-Object Removed) | Should -BeNullOrEmpty -Because 'Action is the plan; nothing was removed under -WhatIf'
        Get-Names $repo | Should -Be @('v1', 'v2', 'v3', 'v4', 'v5')
    }

    It 'removes exactly what the plan removes, dependents first, and every kept backup restores byte-identically' {
        $decisions = @(Limit-VolumeBackup -Repository $repo -KeepLast 2 -Confirm:$false -Verbose 4>&1)
        $verbose = @($decisions | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] } | ForEach-Object Message)

        Get-Names $repo | Should -Be @('v4', 'v5')
        @($decisions | Where-Object { $_ -is [BlockBackup.Engine.Policies.RetentionDecision] -and $_.Removed }).Backup.Name | Sort-Object | Should -Be @('v1', 'v2', 'v3')
        $removedOrder = @($verbose | Where-Object { $_ -like 'Removed backup *' } | ForEach-Object { ($_ -split ' ')[2] })
        $removedOrder | Should -Be @($made.Backups[2].Id, $made.Backups[1].Id, $made.Backups[0].Id | ForEach-Object ToString)

        foreach ($kept in Get-VolumeBackup -Repository $repo) {
            $target = Join-Path $TestDrive "restored-$($kept.Name).img"
            Restore-VolumeBackup -Repository $repo -BackupId $kept.Id -TargetPath $target | Out-Null
            Get-Sha $target | Should -Be $made.Hashes[$kept.Id]
        }
    }

    It 'reports what a declined prompt kept: Removed stays false, and the declined backup''s parents stay too' {
        $declineRepo = Join-Path $TestDrive 'declined'
        $declineVolume = Join-Path $TestDrive 'declined.img'
        $two = New-TwoChains -Repository $declineRepo -Volume $declineVolume
        # A real prompt, answered No once (the first removal is inc3, the newest of the old chain).
        $script = "Import-Module '$ModuleManifest'; Limit-VolumeBackup -Repository '$declineRepo' -KeepLast 2 -WarningAction Continue | ForEach-Object { 'decision ' + `$_.Backup.Name + ' ' + `$_.Action + ' ' + `$_.Removed }"
        $said = ("N`n" | & $Pwsh -NoProfile -Command $script 2>&1) -join "`n"
        $said | Should -Match "is kept: a backup that depends on it stays"
        foreach ($name in 'v1', 'v2', 'v3') { $said | Should -Match "decision $name Remove False" }
        Get-Names $declineRepo | Should -Be @('v1', 'v2', 'v3', 'v4', 'v5')
        $said | Should -Not -Match 'BackupHasDependents'
        $two.Backups.Count | Should -Be 5
    }

    It 'keeps the whole chain of a kept incremental' {
        Limit-VolumeBackup -Repository $repo -KeepLast 1 -Confirm:$false | Out-Null

        Get-Names $repo | Should -Be @('v4', 'v5')
        $chain = Get-VolumeBackup -Repository $repo -Latest | Get-BackupChain
        $chain.Length | Should -Be 2
        $target = Join-Path $TestDrive 'latest.img'
        Restore-VolumeBackup -Repository $repo -BackupId $made.Backups[4].Id -TargetPath $target | Out-Null
        Get-Sha $target | Should -Be $made.Hashes[$made.Backups[4].Id]
    }

    It 'previews with -AsOf and never removes' {
        # A day ago none of the backups existed yet: all are kept, as made after that time.
        $past = @(Limit-VolumeBackup -Repository $repo -KeepWithin (New-TimeSpan -Hours 1) -AsOf (Get-Date).AddDays(-1) -Confirm:$false)
        $past.Action | Sort-Object -Unique | Should -Be 'Keep'
        $past | ForEach-Object { $_.Reasons[0] | Should -BeLike 'made after *' }

        # In two days, a one-day window holds none: only the newest and its parent stay.
        $future = @(Limit-VolumeBackup -Repository $repo -KeepWithin (New-TimeSpan -Days 1) -AsOf (Get-Date).AddDays(2) -Confirm:$false)
        ($future | Where-Object Action -EQ Keep).Backup.Name | Sort-Object | Should -Be @('v4', 'v5')

        # Now, the same window keeps everything (made minutes ago).
        $now = @(Limit-VolumeBackup -Repository $repo -KeepWithin (New-TimeSpan -Days 1) -WhatIf)
        ($now | Where-Object Action -EQ Keep).Count | Should -Be 5
        $now[0].Reasons | Should -Contain 'within 1.00:00:00'

        Get-Names $repo | Should -Be @('v1', 'v2', 'v3', 'v4', 'v5')
    }

    It 'applies the rule to piped backups only' {
        $decisions = @(Get-VolumeBackup -Repository $repo | Where-Object Name -In 'v1', 'v2', 'v3' | Limit-VolumeBackup -KeepLast 1 -Confirm:$false)

        $decisions.Backup.Name | Should -Be @('v1', 'v2', 'v3')
        Get-Names $repo | Should -Be @('v1', 'v2', 'v3', 'v4', 'v5')   # v3 is kept by the rule, v1 and v2 as its chain
        ($decisions | Where-Object { $_.Backup.Name -eq 'v2' }).Reasons | Should -Be @("needed by $($made.Backups[2].Id)")
    }

    It 'reports a damaged backup and removes it only with -RemoveDamaged' {
        $full = $made.Backups[3]
        $spare = New-VolumeBackup -Path $volume -Repository $repo -Name spare -Force
        # Damage the spare full backup's metadata; v5 (an incremental of v4) stays the newest available.
        $metadata = Join-Path (Join-Path $repo $spare.Container) "$($spare.Prefix)_metadata"
        Set-Content -LiteralPath $metadata -Value '{ "version": "not a backup" }'
        (Get-VolumeBackup -Repository $repo -IncludeIncomplete | Where-Object Id -EQ $spare.Id).Status | Should -Be 'Damaged'

        $kept = @(Limit-VolumeBackup -Repository $repo -KeepLast 1 -Confirm:$false)
        $damaged = $kept | Where-Object { $_.BackupId -eq $spare.Id }
        $damaged.Action | Should -Be 'Keep'
        $damaged.Reasons[0] | Should -BeLike 'damaged: *'
        Get-Names $repo | Should -Be @('v4', 'v5')   # a damaged backup's name is unreadable with its metadata
        $spare.Id | Should -BeIn (Get-VolumeBackup -Repository $repo -IncludeIncomplete).Id

        $removed = @(Limit-VolumeBackup -Repository $repo -KeepLast 1 -RemoveDamaged -Confirm:$false)
        ($removed | Where-Object { $_.BackupId -eq $spare.Id }).Action | Should -Be 'Remove'
        $spare.Id | Should -Not -BeIn (Get-VolumeBackup -Repository $repo -IncludeIncomplete).Id
        Get-Names $repo | Should -Be @('v4', 'v5')
        $full.Id | Should -BeIn (Get-VolumeBackup -Repository $repo).Id
    }

    It 'refuses a rule that keeps nothing before touching the repository' {
        { Limit-VolumeBackup -Repository $repo -KeepLast 0 -Confirm:$false } | Should -Throw -ErrorId 'RetentionRuleKeepsNothing,BlockBackup.Commands.LimitVolumeBackupCommand'
        Get-Names $repo | Should -Be @('v1', 'v2', 'v3', 'v4', 'v5')
    }

    It 'does not fail on a piped backup that is already gone' {
        $all = @(Get-VolumeBackup -Repository $repo)
        Remove-VolumeBackup -Repository $repo -BackupId $all[2].Id -Confirm:$false
        $decisions = @($all | Limit-VolumeBackup -KeepLast 1 -Confirm:$false -ErrorAction Stop)

        $decisions.Count | Should -Be 4
        Get-Names $repo | Should -Be @('v4', 'v5')
    }
}

Describe 'Limit-VolumeBackup with a backup dated in the future (issue 18, item 4)' {
    BeforeAll {
        # What a backup made under a skewed clock records: its metadata's created_at.
        function script:Set-CreatedAt {
            param($Backup, [datetime] $Utc)
            $path = Join-Path $Backup.Repository $Backup.Container "$($Backup.Prefix)_metadata"
            $text = Get-Content -LiteralPath $path -Raw
            $stamp = $Utc.ToUniversalTime().ToString('yyyy-MM-dd HH:mm:ss.ffffff', [cultureinfo]::InvariantCulture) + '+00:00'
            [System.IO.File]::WriteAllText($path, ($text -replace '"created_at": "[^"]*"', "`"created_at`": `"$stamp`""))
        }
    }

    It 'warns naming it and its date, and keeps the newest backup made by a correct clock' {
        $repo = Join-Path $TestDrive 'future'
        $volume = Join-Path $TestDrive 'future.img'
        $now = [datetime]::UtcNow
        Set-TestVolume -Path $volume -Version 1
        $full = New-VolumeBackup -Path $volume -Repository $repo -Name full -Force
        Set-CreatedAt $full $now.AddHours(-4)
        Set-TestVolume -Path $volume -Version 2
        $ahead = New-VolumeBackup -Path $volume -Repository $repo -Name ahead -Incremental -Force
        Set-CreatedAt $ahead $now.AddDays(30)
        # Made afterwards by a correct clock, two hours ago: an incremental of the future-dated one (the newest by date).
        Set-TestVolume -Path $volume -Version 3
        $real = New-VolumeBackup -Path $volume -Repository $repo -Name real -Incremental -Force
        Set-CreatedAt $real $now.AddHours(-2)
        $realSha = Get-Sha $volume
        $real.ParentId | Should -Be $ahead.Id

        $decisions = @(Limit-VolumeBackup -Repository $repo -KeepWithin '01:00:00' -Confirm:$false -WarningVariable warnings -WarningAction SilentlyContinue)

        $warnings.Count | Should -Be 1
        $warnings[0].Message | Should -BeLike "Backup $($ahead.Id) of volume * is dated $($now.AddDays(30).ToString('yyyy-MM-dd', [cultureinfo]::InvariantCulture)) *after*clock of the host that made it was ahead*"
        ($decisions | Where-Object BackupId -EQ $real.Id).Reasons | Should -Be @('newest available backup not dated in the future')
        $decisions.Action | Should -Not -Contain 'Remove'
        Get-Names $repo | Should -Be @('ahead', 'full', 'real')
        Restore-VolumeBackup -Repository $repo -BackupId $real.Id -TargetPath (Join-Path $TestDrive 'future-restored.img') | Out-Null
        Get-Sha (Join-Path $TestDrive 'future-restored.img') | Should -Be $realSha
    }
}
