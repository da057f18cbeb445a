#Requires -Version 7.4
#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
}

AfterAll {
    Remove-Module BlockBackup -ErrorAction SilentlyContinue
}

Describe 'Get-VolumeBackup and Get-BackupChain' {
    BeforeAll {
        $script:repo = Join-Path $TestDrive 'list'
        $script:a = Join-Path $TestDrive 'a.img'
        $script:b = Join-Path $TestDrive 'b.img'
        New-TestVolume -Path $a -MiB 3 -Seed 1
        New-TestVolume -Path $b -MiB 2 -Seed 2
        $script:a1 = New-VolumeBackup -Path $a -Repository $repo -Name 'nightly-a1'
        $script:b1 = New-VolumeBackup -Path $b -Repository $repo -Name 'nightly-b1'
        Edit-TestVolume -Path $a -Seed 9
        $script:a2 = New-VolumeBackup -Path $a -Repository $repo -Incremental -Name 'weekly-a2'
    }

    It 'lists every backup, oldest first' {
        (Get-VolumeBackup -Repository $repo).Id | Should -Be @($a1.Id, $b1.Id, $a2.Id)
    }

    It 'filters by name with wildcards, by volume and to the latest per volume' {
        (Get-VolumeBackup -Repository $repo -Name 'NIGHTLY-*').Id | Should -Be @($a1.Id, $b1.Id)
        (Get-VolumeBackup -Repository $repo -VolumeId $a1.VolumeId).Id | Should -Be @($a1.Id, $a2.Id)
        (Get-VolumeBackup -Repository $repo -Latest).Id | Should -Be @($b1.Id, $a2.Id)
    }

    It 'writes a non-terminating BackupNotFound for unknown ids and returns the others' {
        $found = Get-VolumeBackup -Repository $repo -Id $a1.Id, ([guid]::NewGuid()) -ErrorAction SilentlyContinue -ErrorVariable err
        $found.Id | Should -Be $a1.Id
        $err[0].FullyQualifiedErrorId | Should -Be 'BackupNotFound,BlockBackup.Commands.GetVolumeBackupCommand'
    }

    It 'fails with RepositoryNotFound for a missing repository' {
        { Get-VolumeBackup -Repository (Join-Path $TestDrive "nowhere") -ErrorAction Stop } | Should -Throw -ErrorId 'RepositoryNotFound*'
    }

    It 'emits the chain''s backups full first, from a backup id or piped backups' {
        (Get-BackupChain -Repository $repo -BackupId $a2.Id).Id | Should -Be @($a1.Id, $a2.Id)
        (Get-BackupChain $repo $a2.Id).Id | Should -Be @($a1.Id, $a2.Id)   # positional: Repository, BackupId
        @($a2 | Get-BackupChain) | ForEach-Object { $_ | Should -BeOfType ([BlockBackup.Engine.BackupInfo]) }
        @($b1 | Get-BackupChain).Count | Should -Be 1
        $summary = $a2 | Get-BackupChain -Summary
        $summary | Should -BeOfType ([BlockBackup.Engine.BackupChain])
        $summary.Length | Should -Be 2
    }

    It 'pipes the whole chain on: Measure-Object, Test-VolumeBackup' {
        ($a2 | Get-BackupChain | Measure-Object StoredBytes -Sum).Sum | Should -Be ($a1.StoredBytes + $a2.StoredBytes)
        $results = $a2 | Get-BackupChain | Test-VolumeBackup
        $results.BackupId | Should -Be @($a1.Id, $a2.Id)
        $results.IsValid | Should -Be @($true, $true)
    }

    It 'keeps working on deserialized backups (jobs, remoting, Export-Clixml)' {
        $file = Join-Path $TestDrive 'backups.xml'
        Get-VolumeBackup -Repository $repo | Export-Clixml -LiteralPath $file
        $copies = Import-Clixml -LiteralPath $file
        $copies[2].PSObject.TypeNames | Should -Contain 'Deserialized.BlockBackup.Engine.BackupInfo'
        ($copies[2] | Get-BackupChain).Id | Should -Be @($a1.Id, $a2.Id)
        $json = $copies | ConvertTo-Json -Depth 3 | ConvertFrom-Json
        $json[0].Id | Should -Be $a1.Id.ToString()
        $json[0].Status | Should -Be 'Available'
        $json[2].Type | Should -Be 'Incremental'
        (Get-VolumeBackup -Repository $repo | ConvertTo-Json -Depth 3 | ConvertFrom-Json)[2].Status | Should -Be 'Available'
    }

    It 'shows the whole Id and the source in the default table, at 80 and 120 columns' {
        $narrow = Get-VolumeBackup -Repository $repo | Format-Table | Out-String -Width 80
        foreach ($backup in $a1, $b1, $a2) { $narrow | Should -Match ([regex]::Escape($backup.Id.ToString())) }
        $narrow | Should -Match 'Available'
        $wide = Get-VolumeBackup -Repository $repo | Format-Table | Out-String -Width 250
        $wide | Should -Match ([regex]::Escape($a1.Source))
    }

    It 'lists damaged backups by default, and Test-VolumeBackup reports them invalid' {
        $copy = Join-Path $TestDrive 'damaged-list'
        Copy-Item -LiteralPath $repo -Destination $copy -Recurse
        $metadata = Get-ChildItem -LiteralPath (Join-Path $copy $b1.Container) -Filter '*_metadata'
        Set-Content -LiteralPath $metadata.FullName -Value '{"version": "1.0.0", "objects": ['
        $listed = Get-VolumeBackup -Repository $copy
        ($listed | Where-Object Id -EQ $b1.Id).Status | Should -Be 'Damaged'
        ($listed | Where-Object Id -EQ $b1.Id).Problem | Should -Not -BeNullOrEmpty
        $results = Get-VolumeBackup -Repository $copy | Test-VolumeBackup
        @($results).Count | Should -Be 3
        ($results | Where-Object BackupId -EQ $b1.Id).IsValid | Should -BeFalse
        # The invalid ones pipe on by BackupId and Repository.
        $results | Where-Object { -not $_.IsValid } | Remove-VolumeBackup -Confirm:$false
        (Get-VolumeBackup -Repository $copy).Id | Should -Be @($a1.Id, $a2.Id)
    }

    It 'warns about hidden incomplete backups and says how to remove them' {
        $copy = Join-Path $TestDrive 'incomplete-list'
        Copy-Item -LiteralPath $repo -Destination $copy -Recurse
        Get-ChildItem -LiteralPath (Join-Path $copy $b1.Container) -Filter '*_metadata' | Remove-Item
        $null = Get-VolumeBackup -Repository $copy -WarningVariable warnings -WarningAction SilentlyContinue
        "$warnings" | Should -Match "^1 incomplete backup in '$([regex]::Escape($copy))' is hidden"
        "$warnings" | Should -Match ([regex]::Escape("Remove-VolumeBackup -Repository '$copy' -Incomplete"))
        (Get-VolumeBackup -Repository $copy -IncludeIncomplete | Where-Object Id -EQ $b1.Id).Status | Should -Be 'Incomplete'
    }

    It 'fails one piped item for a bad repository, not the whole pipeline' {
        $items = @([pscustomobject]@{ Repository = (Join-Path $TestDrive 'nowhere') }, [pscustomobject]@{ Repository = $repo })
        $found = $items | Get-VolumeBackup -ErrorAction SilentlyContinue -ErrorVariable err
        @($found).Count | Should -Be 3
        $err[0].FullyQualifiedErrorId | Should -BeLike 'RepositoryNotFound,*'
    }

    It 'refuses Ceph parameters for a directory repository' {
        { Get-VolumeBackup -Repository $repo -CephConfig /etc/ceph/ceph.conf -ErrorAction Stop } | Should -Throw -ErrorId 'CephParameterNotApplicable*'
    }

    It 'refuses unknown URL schemes clearly, and takes s3:// for a URL, not a relative path' {
        { Get-VolumeBackup -Repository 'ftp://host/backups' -ErrorAction Stop } | Should -Throw -ErrorId 'RepositoryKindNotSupported*'
        $saved = $env:BLOCKBACKUP_CONFIG_DIR
        $env:BLOCKBACKUP_CONFIG_DIR = Join-Path $TestDrive 'no-registrations'
        try {
            $err = { Get-VolumeBackup -Repository 's3://bucket/prefix' -ErrorAction Stop } | Should -Throw -PassThru
            $err.FullyQualifiedErrorId | Should -BeLike 'ObjectStoreConnectionMissing,*'
        }
        finally { $env:BLOCKBACKUP_CONFIG_DIR = $saved }
        Test-Path -LiteralPath 's3:' | Should -BeFalse
        { Get-VolumeBackup -Repository 's3://bad bucket' -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidRepository*'
    }

    It 'completes backup ids and names offline' {
        $line = "Get-BackupChain -Repository '$repo' -BackupId "
        $completion = TabExpansion2 -inputScript $line -cursorColumn $line.Length
        $completion.CompletionMatches.CompletionText | Should -Contain $a2.Id.ToString()
        $line = "Get-VolumeBackup -Repository '$repo' -Name week"
        (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText | Should -Contain 'weekly-a2'
    }

    It 'completes against the session''s location, not the process directory' {
        Push-Location -LiteralPath $TestDrive
        try {
            $line = "Get-BackupChain -Repository ./list -BackupId "
            (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText | Should -Contain $a2.Id.ToString()
        }
        finally {
            Pop-Location
        }
    }

    It 'reports a broken chain with BackupChainBroken' {
        $copy = Join-Path $TestDrive 'broken'
        Copy-Item -LiteralPath $repo -Destination $copy -Recurse
        $container = Join-Path $copy $a1.Container
        Get-ChildItem -LiteralPath $container -Filter '*_metadata' | Remove-Item
        { Get-BackupChain -Repository $copy -BackupId $a2.Id -ErrorAction Stop } | Should -Throw -ErrorId 'BackupChainBroken*'
    }

    It 'names a damaged parent''s problem in one sentence (no doubled full stop)' {
        $copy = Join-Path $TestDrive 'damaged-parent'
        Copy-Item -LiteralPath $repo -Destination $copy -Recurse
        $metadata = Get-ChildItem -LiteralPath (Join-Path $copy $a1.Container) -Filter '*_metadata'
        Set-Content -LiteralPath $metadata.FullName -Value '{"version": "1.0.0"' -NoNewline
        $message = try { Get-BackupChain -Repository $copy -BackupId $a2.Id -ErrorAction Stop; '' } catch { $_.Exception.Message }
        $message | Should -Match "parent $($a1.Id) of backup $($a2.Id) is damaged: "
        $message | Should -Not -Match '\.\.'
    }
}

Describe 'Test-VolumeBackup -SamplePercent' {
    BeforeAll {
        $script:repo = Join-Path $TestDrive 'sampled'
        $script:volume = Join-Path $TestDrive 'sampled.img'
        New-TestVolume -Path $volume -MiB 8 -Seed 60
        $script:backups = @(New-VolumeBackup -Path $volume -Repository $repo -ObjectSize 1MB)
        Edit-TestVolume -Path $volume -Seed 61
        $backups += New-VolumeBackup -Path $volume -Repository $repo -Incremental -ObjectSize 1MB
        $env:BLOCKBACKUP_CONFIG_DIR = Join-Path $TestDrive 'config'
    }

    AfterAll {
        Remove-Item Env:BLOCKBACKUP_CONFIG_DIR -ErrorAction SilentlyContinue
    }

    It 'covers the whole repository in rotation, each run continuing where the last stopped' {
        $first = Test-VolumeBackup -Repository $repo -SamplePercent 40
        $first.IsValid | Should -BeTrue
        $first.UnitsChecked | Should -Be ([math]::Ceiling($first.UnitsTotal * 0.4))
        $first.LastFullCoverageUtc | Should -BeNullOrEmpty
        $second = Test-VolumeBackup -Repository $repo -SamplePercent 40
        $second.LastFullCoverageUtc | Should -BeNullOrEmpty
        $second.CoveredPercent | Should -BeGreaterThan $first.CoveredPercent
        $third = Test-VolumeBackup -Repository $repo -SamplePercent 40
        $third.LastFullCoverageUtc | Should -Not -BeNullOrEmpty -Because 'three runs of 40% cover everything'
        $third.CoveredPercent | Should -Be 100
        Test-Path (Join-Path $TestDrive 'config/verification') | Should -BeTrue
    }

    It 'finds a damaged object within one rotation' {
        $object = Get-ChildItem -LiteralPath (Join-Path $repo $backups[0].Container) -Filter "$($backups[0].Prefix)-*" | Sort-Object Length -Descending | Select-Object -First 1
        $bytes = [System.IO.File]::ReadAllBytes($object.FullName)
        $bytes[[int]($bytes.Length / 2)] = $bytes[[int]($bytes.Length / 2)] -bxor 0xFF
        [System.IO.File]::WriteAllBytes($object.FullName, $bytes)
        $runs = 1..3 | ForEach-Object { Test-VolumeBackup -Repository $repo -SamplePercent 40 }
        ($runs | Where-Object { -not $_.IsValid }).Issues.ObjectName | Should -Contain $object.Name
        (Test-VolumeBackup -Repository $repo -SamplePercent 100 -Quiet) | Should -BeFalse
    }
}

Describe 'What pipes into what (registrations, backups, schedules)' {
    BeforeAll {
        $env:BLOCKBACKUP_CONFIG_DIR = Join-Path $TestDrive 'pipe-config'
        $script:pipeRepo = Join-Path $TestDrive 'pipe'
        $script:p = Join-Path $TestDrive 'p.img'
        $script:q = Join-Path $TestDrive 'q.img'
        New-TestVolume -Path $p -MiB 1 -Seed 3
        New-TestVolume -Path $q -MiB 1 -Seed 4
        foreach ($round in 1, 2) {
            New-VolumeBackup -Path $p -Repository $pipeRepo | Out-Null
            New-VolumeBackup -Path $q -Repository $pipeRepo | Out-Null
        }
        Register-BackupRepository -Name piped -Uri $pipeRepo
    }
    AfterAll {
        Remove-Item Env:BLOCKBACKUP_CONFIG_DIR -ErrorAction SilentlyContinue
    }

    It 'a registration pipes into -Repository: Get-BackupRepository -Name x | Get-VolumeBackup, | Test-VolumeBackup -SamplePercent' {
        (Get-BackupRepository -Name piped | Get-VolumeBackup -ErrorAction Stop).Count | Should -Be 4
        $checked = Get-BackupRepository -Name piped | Test-VolumeBackup -SamplePercent 100 -ErrorAction Stop
        @($checked).Count | Should -BeGreaterThan 0
        @($checked | Where-Object IsValid -NE $true) | Should -BeNullOrEmpty
    }

    It 'piped backups are read back as themselves, not widened to their volumes: Get-VolumeBackup -Latest | Get-VolumeBackup' {
        $latest = Get-VolumeBackup -Repository $pipeRepo -Latest
        $latest.Count | Should -Be 2
        $again = $latest | Get-VolumeBackup -ErrorAction Stop
        @($again.Id) | Should -Be @($latest.Id)
    }

    It 'completes -Repository with registered names (then paths) for <_>' -ForEach @('Get-VolumeBackup', 'Test-VolumeBackup', 'Restore-VolumeBackup', 'New-VolumeBackup', 'Limit-VolumeBackup', 'Remove-VolumeBackup', 'Get-BackupChain', 'New-BackupPolicy', 'Set-BackupPolicy') {
        $line = "$_ -Repository pip"
        $found = (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches
        $found.CompletionText | Should -Contain 'piped'
        $found[0].ToolTip | Should -BeLike "piped: $pipeRepo*"
        Push-Location $TestDrive
        try {
            $line = "$_ -Repository ./pip"
            (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText | Should -Contain (Join-Path . 'pipe')
        }
        finally { Pop-Location }
    }

    It 'completes -BackupId on a registered directory repository by its name' {
        $newest = Get-VolumeBackup -Repository $pipeRepo | Sort-Object CreatedUtc | Select-Object -Last 1
        $line = 'Test-VolumeBackup -Repository piped -BackupId '
        (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText | Should -Contain $newest.Id.ToString()
    }

    It 'completes policy -Name with policy names, not file paths, for <_>' -ForEach @('Get-BackupPolicy', 'Set-BackupPolicy', 'Remove-BackupPolicy', 'Invoke-BackupPolicy', 'Get-BackupPolicyStatus') {
        if (-not (Get-BackupPolicy -Name 'pipe-nightly' -ErrorAction SilentlyContinue)) {
            New-BackupPolicy -Name pipe-nightly -Path $p -Repository $pipeRepo -Schedule '0 2 * * *' -KeepLast 1 | Out-Null
        }
        Push-Location $TestDrive
        try {
            $line = "$_ -Name "
            $texts = @((TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText)
            $texts | Should -Be @('pipe-nightly')
            $line = "$_ -Name pipe-n"
            (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText | Should -Be 'pipe-nightly'
        }
        finally { Pop-Location }
    }

    It 'a schedule registration pipes into Unregister-BackupSchedule (its kind and destination)' {
        $cron = Join-Path $TestDrive 'pipe-cron/blockbackup'
        Register-BackupSchedule -Kind Cron -Destination $cron -LogFile (Join-Path $TestDrive 'pipe.log') -Confirm:$false
        $gone = Get-BackupSchedule -Kind Cron -Destination $cron | Unregister-BackupSchedule -Confirm:$false -PassThru -ErrorAction Stop
        $gone.IsRegistered | Should -BeFalse
        $gone.Destination | Should -Be $cron
        Test-Path -LiteralPath $cron | Should -BeFalse
    }
}
