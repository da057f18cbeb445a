#Requires -Version 7.4
#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }
<#
    End-to-end tests of the BlockBackup module as users run it: every cmdlet on temporary
    volumes, pipelines, -WhatIf, error ids, progress, cancellation and the restore path rules.
    Run with ./build.ps1 -Task Pester (or Invoke-Pester ./tests) after `dotnet build`.
#>

BeforeAll {
    $repoRoot = Split-Path -Parent (Split-Path -Parent $PSScriptRoot)
    $script:ModuleManifest = Join-Path $repoRoot 'out/BlockBackup/BlockBackup.psd1'
    if (-not (Test-Path -LiteralPath $ModuleManifest)) {
        throw "The module is not built: run 'dotnet build' in $repoRoot first."
    }

    Import-Module $ModuleManifest -Force -ErrorAction Stop
    $ProgressPreference = 'SilentlyContinue'

    # A volume of 1 MiB regions cycling random, zero, text and hole (never written).
    function script:New-TestVolume {
        param([string] $Path, [int] $MiB, [int] $Seed = 1)
        $rnd = [System.Random]::new($Seed)
        $text = [System.Text.Encoding]::ASCII.GetBytes(('{"level":"INFO","svc":"api","msg":"volume backup ' * 40000))
        $buffer = [byte[]]::new(1MB)
        $stream = [System.IO.File]::Open($Path, 'Create', 'Write')
        try {
            for ($i = 0; $i -lt $MiB; $i++) {
                $kind = ($i + $Seed) % 4
                if ($kind -eq 3) {
                    continue   # a hole: never written
                }
                switch ($kind) {
                    0 { $rnd.NextBytes($buffer) }
                    1 { [System.Array]::Clear($buffer) }
                    2 { [System.Array]::Copy($text, $rnd.Next(0, 1000), $buffer, 0, 1MB) }
                }
                $stream.Position = [long]$i * 1MB
                $stream.Write($buffer, 0, $buffer.Length)
            }
            $stream.SetLength([long]$MiB * 1MB)
        }
        finally {
            $stream.Dispose()
        }
    }

    # Overwrites a few scattered ranges in place.
    function script:Edit-TestVolume {
        param([string] $Path, [int] $Seed)
        $rnd = [System.Random]::new($Seed)
        $stream = [System.IO.File]::Open($Path, 'Open', 'ReadWrite')
        try {
            foreach ($n in 1..6) {
                $data = [byte[]]::new($rnd.Next(1, 200000))
                $rnd.NextBytes($data)
                $stream.Position = $rnd.NextInt64(0, $stream.Length - $data.Length)
                $stream.Write($data, 0, $data.Length)
            }
        }
        finally {
            $stream.Dispose()
        }
    }

    function script:Get-Sha { param([string] $Path) (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash }
}

AfterAll {
    Remove-Module BlockBackup -ErrorAction SilentlyContinue
}

Describe 'The module' {
    It 'exports exactly its nine cmdlets' {
        (Get-Command -Module BlockBackup).Name | Sort-Object | Should -Be @(
            'Export-VolumeBackupRecord', 'Get-BackupChain', 'Get-VolumeBackup', 'Import-VolumeBackupRecord',
            'Limit-VolumeBackup', 'New-VolumeBackup', 'Remove-VolumeBackup', 'Restore-VolumeBackup', 'Test-VolumeBackup')
    }

    It 'has help with a synopsis and at least two examples for <_>' -ForEach @(
        'Export-VolumeBackupRecord', 'Get-BackupChain', 'Get-VolumeBackup', 'Import-VolumeBackupRecord',
        'Limit-VolumeBackup', 'New-VolumeBackup', 'Remove-VolumeBackup', 'Restore-VolumeBackup', 'Test-VolumeBackup') {
        $help = Get-Help $_ -Full
        $help.Synopsis | Should -Not -BeNullOrEmpty
        $help.Synopsis | Should -Not -Match '^\s*\w+-\w+\s*\['   # not the auto-generated syntax
        @($help.Examples.Example).Count | Should -BeGreaterOrEqual 2
        foreach ($parameter in (Get-Command $_).Parameters.Values | Where-Object { $_.Name -notin [System.Management.Automation.PSCmdlet]::CommonParameters -and $_.Name -notin [System.Management.Automation.PSCmdlet]::OptionalCommonParameters }) {
            ($help.Parameters.Parameter | Where-Object Name -EQ $parameter.Name).Description | Should -Not -BeNullOrEmpty -Because "-$($parameter.Name) must be documented"
        }
    }

    It 'has the about_BlockBackup topic' {
        Get-Help about_BlockBackup | Out-String | Should -Match 'RESTORE PATHS'
    }
}

Describe 'The README example' {
    BeforeAll {
        $script:work = Join-Path $TestDrive 'readme'
        New-Item -ItemType Directory -Path $work | Out-Null
        Push-Location $work
        New-TestVolume -Path ./disk.img -MiB 12 -Seed 1
    }

    AfterAll {
        Pop-Location
    }

    It 'works exactly as written, piped and all' {
        $full = New-VolumeBackup -Path ./disk.img -Repository ./backups -Name first
        Edit-TestVolume -Path ./disk.img -Seed 2
        $incremental = New-VolumeBackup -Path ./disk.img -Repository ./backups -Incremental
        $chain = Get-VolumeBackup -Repository ./backups -Latest | Get-BackupChain
        $restore = Get-VolumeBackup -Repository ./backups -Latest | Restore-VolumeBackup -TargetPath ./restored.img
        $tests = Get-VolumeBackup -Repository ./backups | Test-VolumeBackup

        $full.Name | Should -Be 'first'
        $full.IsIncremental | Should -BeFalse
        $full.Consistency | Should -BeIn @('direct', 'reflink-clone')
        $incremental.ParentId | Should -Be $full.Id
        $chain.Backups.Id | Should -Be @($full.Id, $incremental.Id)
        $restore.Path | Should -Be 'Chain'
        $restore.Decision.Rule | Should -Be 'IncrementalChain'
        Get-Sha ./restored.img | Should -Be (Get-Sha ./disk.img)
        @($tests).Count | Should -Be 2
        $tests.IsValid | Should -Not -Contain $false
    }
}

Describe 'New-VolumeBackup' {
    BeforeEach {
        $script:repo = Join-Path $TestDrive ([guid]::NewGuid())
        $script:vol = Join-Path $TestDrive "vol-$([guid]::NewGuid()).img"
        New-TestVolume -Path $vol -MiB 4 -Seed 3
    }

    It 'takes volumes from the pipeline (FileInfo by property name)' {
        $backup = Get-Item -LiteralPath $vol | New-VolumeBackup -Repository $repo -Name piped
        $backup | Should -BeOfType ([BlockBackup.Engine.BackupInfo])
        $backup.Source | Should -Be (Resolve-Path -LiteralPath $vol).ProviderPath
        $backup.VolumeSize | Should -Be 4MB
    }

    It 'creates nothing under -WhatIf' {
        New-VolumeBackup -Path $vol -Repository $repo -WhatIf
        Test-Path $repo | Should -BeFalse
    }

    It 'refuses an incremental without a parent, with error id NoParentBackup' {
        { New-VolumeBackup -Path $vol -Repository $repo -Incremental -ErrorAction Stop } |
            Should -Throw -ErrorId 'NoParentBackup,BlockBackup.Commands.NewVolumeBackupCommand'
    }

    It 'reports a missing volume as ObjectNotFound (VolumeNotFound)' {
        $err = $null
        New-VolumeBackup -Path (Join-Path $TestDrive 'missing.img') -Repository $repo -ErrorAction SilentlyContinue -ErrorVariable err
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VolumeNotFound,*'
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It 'continues with the next piped volume after one fails (non-terminating errors)' {
        $backups = @((Join-Path $TestDrive 'nope.img'), $vol) | New-VolumeBackup -Repository $repo -ErrorAction SilentlyContinue -ErrorVariable err
        @($backups).Count | Should -Be 1
        @($err).Count | Should -Be 1
    }

    It 'refuses a volume open for writing by another process unless -Force' -Skip:(-not $IsLinux) {
        # exec: the shell becomes sleep, so the process holding the file is the one we stop.
        $writer = Start-Process -FilePath sh -ArgumentList '-c', "exec 3>>'$vol'; exec sleep 60" -PassThru
        try {
            Start-Sleep -Milliseconds 500
            { New-VolumeBackup -Path $vol -Repository $repo -NoSnapshot -ErrorAction Stop } | Should -Throw -ErrorId 'VolumeInUse*'
            (New-VolumeBackup -Path $vol -Repository $repo -NoSnapshot -Force).Consistency | Should -Be 'direct-forced'
        }
        finally {
            Stop-Process -Id $writer.Id -ErrorAction SilentlyContinue
        }
    }

    It 'writes progress, and none under SilentlyContinue' {
        foreach ($case in @(@{ Preference = 'Continue'; Any = $true }, @{ Preference = 'SilentlyContinue'; Any = $false })) {
            $ps = [powershell]::Create()
            try {
                $null = $ps.AddScript("Import-Module '$ModuleManifest'; `$ProgressPreference = '$($case.Preference)'; New-VolumeBackup -Path '$vol' -Repository '$repo' | Out-Null")
                $null = $ps.Invoke()
                $ps.HadErrors | Should -BeFalse
                ($ps.Streams.Progress.Count -gt 0) | Should -Be $case.Any
            }
            finally {
                $ps.Dispose()
            }
        }
    }

    It 'stops promptly when the pipeline is stopped and leaves no backup behind' {
        $big = Join-Path $TestDrive 'big.img'
        $text = [System.Text.Encoding]::ASCII.GetBytes(('backup chain ' * 100000))
        $stream = [System.IO.File]::Create($big)
        try {
            foreach ($i in 1..96) { $stream.Write($text, 0, $text.Length) }   # ~125 MB of text: seconds of bz2
        }
        finally { $stream.Dispose() }
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddScript("Import-Module '$ModuleManifest'; New-VolumeBackup -Path '$big' -Repository '$repo' -Compression bz2 -NoSnapshot")
            $async = $ps.BeginInvoke()
            $deadline = [DateTime]::UtcNow.AddSeconds(30)
            while (-not (Get-ChildItem -LiteralPath $repo -Recurse -Force -Filter '.tmp-*' -ErrorAction SilentlyContinue) -and [DateTime]::UtcNow -lt $deadline) {
                Start-Sleep -Milliseconds 20
            }
            $clock = [System.Diagnostics.Stopwatch]::StartNew()
            $ps.Stop()
            $clock.Elapsed.TotalSeconds | Should -BeLessThan 10
            $async.IsCompleted | Should -BeTrue
        }
        finally {
            $ps.Dispose()
        }
        Get-VolumeBackup -Repository $repo -IncludeIncomplete | Should -BeNullOrEmpty
    }
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
        { Get-VolumeBackup -Repository (Join-Path $TestDrive 'nowhere') } | Should -Throw -ErrorId 'RepositoryNotFound*'
    }

    It 'builds the chain full first, from a backup id or piped backups' {
        (Get-BackupChain -Repository $repo -BackupId $a2.Id).Backups.Id | Should -Be @($a1.Id, $a2.Id)
        ($a2 | Get-BackupChain).Length | Should -Be 2
        ($b1 | Get-BackupChain).Length | Should -Be 1
    }

    It 'keeps working on deserialized backups (jobs, remoting, Export-Clixml)' {
        $file = Join-Path $TestDrive 'backups.xml'
        Get-VolumeBackup -Repository $repo | Export-Clixml -LiteralPath $file
        $copies = Import-Clixml -LiteralPath $file
        $copies[2].PSObject.TypeNames | Should -Contain 'Deserialized.BlockBackup.Engine.BackupInfo'
        ($copies[2] | Get-BackupChain).Backups.Id | Should -Be @($a1.Id, $a2.Id)
        ($copies | ConvertTo-Json -Depth 3 | ConvertFrom-Json)[0].Id | Should -Be $a1.Id.ToString()
    }

    It 'completes backup ids and names offline' {
        $line = "Get-BackupChain -Repository '$repo' -BackupId "
        $completion = TabExpansion2 -inputScript $line -cursorColumn $line.Length
        $completion.CompletionMatches.CompletionText | Should -Contain $a2.Id.ToString()
        $line = "Get-VolumeBackup -Repository '$repo' -Name week"
        (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText | Should -Contain 'weekly-a2'
    }

    It 'reports a broken chain with BackupChainBroken' {
        $copy = Join-Path $TestDrive 'broken'
        Copy-Item -LiteralPath $repo -Destination $copy -Recurse
        $container = Join-Path $copy $a1.Container
        Get-ChildItem -LiteralPath $container -Filter '*_metadata' | Remove-Item
        { Get-BackupChain -Repository $copy -BackupId $a2.Id -ErrorAction Stop } | Should -Throw -ErrorId 'BackupChainBroken*'
    }
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

    It 'runs in a non-interactive session with -Confirm:$false' {
        $pwsh = (Get-Process -Id $PID).Path
        & $pwsh -NoProfile -NonInteractive -Command "Import-Module '$ModuleManifest'; Remove-VolumeBackup -Repository '$repo' -BackupId $($incr.Id) -Confirm:`$false -ErrorAction Stop"
        $LASTEXITCODE | Should -Be 0
        (Get-VolumeBackup -Repository $repo).Id | Should -Be @($full.Id)
    }

    It 'removes the leftovers of interrupted backups with -Incomplete' {
        $leftover = Join-Path $repo 'ab/cd/abcdabcd-0000-0000-0000-000000000000'
        New-Item -ItemType Directory -Path $leftover | Out-Null
        $prefix = "volume_$($full.VolumeId)_20260101000000_backup_abcdabcd-0000-0000-0000-000000000000"
        Set-Content -LiteralPath (Join-Path $leftover "$prefix-00001") -Value 'partial'
        (Get-VolumeBackup -Repository $repo -IncludeIncomplete | Where-Object Status -EQ 'Incomplete').Count | Should -Be 1
        $removed = Remove-VolumeBackup -Repository $repo -Incomplete -Confirm:$false -PassThru
        $removed.Container | Should -Be ([System.IO.Path]::Combine('ab', 'cd', 'abcdabcd-0000-0000-0000-000000000000'))
        Test-Path $leftover | Should -BeFalse
        @(Get-VolumeBackup -Repository $repo).Count | Should -Be 2
    }
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

Describe 'Ceph RBD backup pools and the differential restore rules' -Skip:(-not $env:BLOCKBACKUP_CEPH_CONF) {
    BeforeAll {
        $script:conf = $env:BLOCKBACKUP_CEPH_CONF
        $script:ceph = @{ CephConfig = $conf }
        $script:tag = ([guid]::NewGuid().ToString('N')).Substring(0, 8)
        $script:images = [System.Collections.Generic.List[string]]::new()

        function script:Invoke-Rbd {
            $output = & rbd --conf $conf @args 2>&1
            if ($LASTEXITCODE -ne 0) { throw "rbd $($args -join ' ') failed: $output" }
            $output
        }

        # Imports a local file as a new RBD image.
        function script:New-RbdImage {
            param([string] $Name, [string] $From)
            Invoke-Rbd import --no-progress --image-format 2 $From "rbd/$Name" | Out-Null
            $images.Add("rbd/$Name")
            "rbd/$Name"
        }

        function script:Get-RbdSha {
            param([string] $Spec)
            $file = Join-Path $TestDrive "export-$([guid]::NewGuid()).img"
            Invoke-Rbd export --no-progress $Spec $file | Out-Null
            try { Get-Sha $file } finally { Remove-Item -LiteralPath $file }
        }

        $local = Join-Path $TestDrive 'rbd-source.img'
        New-TestVolume -Path $local -MiB 16 -Seed 21
        $script:sourceSha = Get-Sha $local
        $script:source = New-RbdImage -Name "pester-src-$tag" -From $local
        $script:backup = New-VolumeBackup -RbdImage $source -Repository rbd:backups -Name "pester-$tag" @ceph
    }

    AfterAll {
        Get-VolumeBackup -Repository rbd:backups @ceph | Where-Object Name -Like "pester-$tag*" |
            Sort-Object CreatedUtc -Descending | Remove-VolumeBackup -IncludeDependents -Confirm:$false @ceph -ErrorAction SilentlyContinue
        foreach ($image in $images) {
            & rbd --conf $conf snap purge --no-progress $image 2>$null
            & rbd --conf $conf rm --no-progress $image 2>$null
        }
    }

    It 'backs up an RBD image into the pool as Cinder names it' {
        $backup.Repository | Should -Be 'rbd:backups'
        $backup.Container | Should -Be "volume-$($backup.VolumeId).backup.$($backup.Id)"
        $backup.Prefix | Should -Match "^backup\.$($backup.Id)\.snap\.\d+\.\d+$"
        (Get-VolumeBackup -Repository rbd:backups -Name "pester-$tag" @ceph).Id | Should -Be $backup.Id
        (Test-VolumeBackup -Repository rbd:backups -BackupId $backup.Id @ceph).IsValid | Should -BeTrue
        ($backup | Export-VolumeBackupRecord @ceph).BackupService | Should -Be 'cinder.backup.drivers.ceph.CephBackupDriver'
    }

    It 'restores into an empty RBD image differentially (DifferentialAllowed)' {
        $target = "rbd/pester-empty-$tag"
        $images.Add($target)
        $result = $backup | Restore-VolumeBackup -TargetRbdImage $target @ceph
        $result.Path | Should -Be 'Differential'
        $result.Decision.Rule | Should -Be 'DifferentialAllowed'
        $result.Decision.Reason | Should -Not -BeNullOrEmpty
        Get-RbdSha $target | Should -Be $sourceSha
    }

    It 'refuses a non-empty RBD target without -Force, then copies in full (TargetHasExtents)' {
        $junk = Join-Path $TestDrive 'junk.img'
        New-TestVolume -Path $junk -MiB 16 -Seed 77
        $target = New-RbdImage -Name "pester-dirty-$tag" -From $junk
        { $backup | Restore-VolumeBackup -TargetRbdImage $target @ceph -ErrorAction Stop } | Should -Throw -ErrorId 'TargetHasData*'
        $result = $backup | Restore-VolumeBackup -TargetRbdImage $target -Force -Confirm:$false @ceph
        $result.Path | Should -Be 'Full'
        $result.Decision.Rule | Should -Be 'TargetHasExtents'
        Get-RbdSha $target | Should -Be $sourceSha
    }

    It 'copies in full onto the backup''s own source volume (TargetIsSourceVolume)' {
        $result = $backup | Restore-VolumeBackup -TargetRbdImage $source -Force -Confirm:$false @ceph
        $result.Path | Should -Be 'Full'
        $result.Decision.Rule | Should -Be 'TargetIsSourceVolume'
        Get-RbdSha $source | Should -Be $sourceSha
    }

    It 'copies in full to a file (TargetNotRbd), and shows the decision under -WhatIf without writing' {
        $file = Join-Path $TestDrive 'from-rbd.img'
        $backup | Restore-VolumeBackup -TargetPath $file -WhatIf @ceph
        Test-Path $file | Should -BeFalse
        $result = $backup | Restore-VolumeBackup -TargetPath $file @ceph
        $result.Path | Should -Be 'Full'
        $result.Decision.Rule | Should -Be 'TargetNotRbd'
        Get-Sha $file | Should -Be $sourceSha
    }

    It 'copies in full when the backup''s snapshot was removed from its base (NoRestorePoint)' {
        $other = New-VolumeBackup -RbdImage $source -Repository rbd:backups -Name "pester-$tag-nosnap" @ceph
        Invoke-Rbd snap rm --no-progress "backups/$($other.Container)@$($other.Prefix)" | Out-Null
        $target = "rbd/pester-nosnap-$tag"
        $images.Add($target)
        $result = Restore-VolumeBackup -Repository rbd:backups -BackupId $other.Id -TargetRbdImage $target @ceph
        $result.Path | Should -Be 'Full'
        $result.Decision.Rule | Should -Be 'NoRestorePoint'
        Get-RbdSha $target | Should -Be $sourceSha
    }

    It 'copies in full from the legacy base name when the recorded base is missing (BaseImageMissing)' {
        $other = New-VolumeBackup -RbdImage $source -Repository rbd:backups -Name "pester-$tag-legacy" @ceph
        Invoke-Rbd rename "backups/$($other.Container)" "backups/volume-$($other.VolumeId).backup.base" | Out-Null
        $images.Add("backups/volume-$($other.VolumeId).backup.base")
        $file = Join-Path $TestDrive 'legacy.img'
        $result = Restore-VolumeBackup -Repository rbd:backups -BackupId $other.Id -TargetPath $file @ceph
        $result.Path | Should -Be 'Full'
        $result.Decision.Rule | Should -Be 'BaseImageMissing'
        Get-Sha $file | Should -Be $sourceSha
    }

    It 'backs up an RBD image into a file repository, differentially, and restores it exactly' {
        $repo = Join-Path $TestDrive 'rbd-to-file'
        $full = New-VolumeBackup -RbdImage $source -Repository $repo -Name "pester-$tag-file" @ceph
        $full.Consistency | Should -Be 'rbd-snapshot'
        $full.Repository | Should -Be (Resolve-Path $repo).ProviderPath
        $output = New-VolumeBackup -RbdImage $source -Repository $repo -Incremental -Verbose @ceph 4>&1
        $incr = $output | Where-Object { $_ -is [BlockBackup.Engine.BackupInfo] }
        ($output | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }).Message | Should -Match 'differential'
        $incr.ParentId | Should -Be $full.Id
        $file = Join-Path $TestDrive 'rbd-to-file.img'
        ($incr | Restore-VolumeBackup -TargetPath $file).Path | Should -Be 'Chain'
        Get-Sha $file | Should -Be $sourceSha
        Test-VolumeBackup -Repository $repo -BackupId $incr.Id -IncludeChain -Quiet | Should -BeTrue
        Remove-VolumeBackup -Repository $repo -BackupId $full.Id -IncludeDependents -Confirm:$false
        Get-VolumeBackup -Repository $repo | Should -BeNullOrEmpty
    }

    It 'chains, refuses to delete a parent, and deletes snapshots and the base' {
        $incr = New-VolumeBackup -RbdImage $source -Repository rbd:backups -Incremental -Parent $backup.Id -Name "pester-$tag-incr" @ceph
        $incr.ParentId | Should -Be $backup.Id
        (Get-BackupChain -Repository rbd:backups -BackupId $incr.Id @ceph).Backups.Id | Should -Be @($backup.Id, $incr.Id)
        { Remove-VolumeBackup -Repository rbd:backups -BackupId $backup.Id -Confirm:$false @ceph -ErrorAction Stop } | Should -Throw -ErrorId 'BackupHasDependents*'
        $removed = Remove-VolumeBackup -Repository rbd:backups -BackupId $backup.Id -IncludeDependents -Confirm:$false -PassThru @ceph
        $removed.Id | Should -Be @($incr.Id, $backup.Id)
        & rbd --conf $conf info "backups/$($backup.Container)" 2>$null
        $LASTEXITCODE | Should -Not -Be 0
    }
}
