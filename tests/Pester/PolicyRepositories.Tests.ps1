#Requires -Version 7.4
#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }
<#
    Where a policy's backups go, and what one bad policy may stop: a policy keeps the repository
    the user named (a registered name, an s3:// or swift:// URL, rbd:, or an absolute path), finds
    it again at each run wherever the scheduler starts it, fails (writing nothing anywhere) once a
    registered name is gone, and one unreadable policy file never keeps the other due policies
    from running. S3 and Swift on the real RADOS Gateway that .ci/run starts.
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:savedConfig = $env:BLOCKBACKUP_CONFIG_DIR
    $script:config = Join-Path $TestDrive 'config'
    $env:BLOCKBACKUP_CONFIG_DIR = $config
    $script:volume = Join-Path $TestDrive 'policy.img'
    New-TestVolume -Path $volume -MiB 2 -Seed 21

    # Runs a script in a child pwsh started in $Directory (as a scheduler starts the run somewhere else).
    function script:Invoke-Elsewhere {
        param([string] $Directory, [string] $Script)
        New-Item -ItemType Directory -Force -Path $Directory | Out-Null
        $file = Join-Path $TestDrive "run-$([guid]::NewGuid()).ps1"
        Set-Content -LiteralPath $file -Value "`$ProgressPreference = 'SilentlyContinue'; Import-Module '$ModuleManifest'; $Script"
        Push-Location -LiteralPath $Directory
        try { $output = & $Pwsh -NoProfile -NonInteractive -File $file 2>&1 } finally { Pop-Location }
        [pscustomobject]@{ ExitCode = $LASTEXITCODE; Output = ($output | Out-String) }
    }
}

AfterAll {
    $env:BLOCKBACKUP_CONFIG_DIR = $script:savedConfig
    Remove-Module BlockBackup -ErrorAction SilentlyContinue
}

$rgwMissing = -not ($env:BLOCKBACKUP_S3_ENDPOINT -and $env:BLOCKBACKUP_S3_ACCESS_KEY -and $env:BLOCKBACKUP_S3_SECRET_KEY -and
    $env:BLOCKBACKUP_SWIFT_AUTH_URL -and $env:BLOCKBACKUP_SWIFT_USER -and $env:BLOCKBACKUP_SWIFT_KEY)

Describe 'A policy over object storage (<Kind>)' -Skip:$rgwMissing -ForEach @(
    @{ Kind = 's3'; ByName = $true }
    @{ Kind = 'swift'; ByName = $false }
) {
    BeforeAll {
        $script:bucket = "pol-$Kind-$(([guid]::NewGuid().ToString('N')).Substring(0, 10))"
        $script:name = "pol-$Kind"
        if ($Kind -eq 's3') {
            $credential = [pscredential]::new($env:BLOCKBACKUP_S3_ACCESS_KEY, (ConvertTo-SecureString $env:BLOCKBACKUP_S3_SECRET_KEY -AsPlainText -Force))
            Register-BackupRepository -Name $name -Uri "s3://$bucket" -Endpoint $env:BLOCKBACKUP_S3_ENDPOINT -Credential $credential
        }
        else {
            $credential = [pscredential]::new($env:BLOCKBACKUP_SWIFT_USER, (ConvertTo-SecureString $env:BLOCKBACKUP_SWIFT_KEY -AsPlainText -Force))
            Register-BackupRepository -Name $name -Uri "swift://$bucket" -Endpoint $env:BLOCKBACKUP_SWIFT_AUTH_URL -Credential $credential -WarningAction SilentlyContinue
        }
        # The policy names the registration (by name, or by the URL it registers) from a directory
        # where a directory of that name would be made if the name were taken for a path.
        $script:madeIn = Join-Path $TestDrive "made-in-$Kind"
        New-Item -ItemType Directory -Force -Path $madeIn | Out-Null
        $script:named = if ($ByName) { $name } else { "swift://$bucket" }
        Push-Location -LiteralPath $madeIn
        try { $script:policy = New-BackupPolicy -Name "obj-$Kind" -Path $volume -Repository $named -Schedule '0 2 * * *' -KeepLast 2 }
        finally { Pop-Location }
        $script:runIn = Join-Path $TestDrive "run-in-$Kind"
    }

    AfterAll {
        Remove-BackupPolicy -Name "obj-$Kind" -Confirm:$false -ErrorAction SilentlyContinue
        Get-VolumeBackup -Repository $named -ErrorAction SilentlyContinue | Remove-VolumeBackup -Confirm:$false -ErrorAction SilentlyContinue
        Unregister-BackupRepository -Name $name -Confirm:$false -ErrorAction SilentlyContinue
    }

    It 'stores what the user named, not a directory made of it' {
        $policy.Repository | Should -Be $named
        (Get-Content -Raw -LiteralPath (Join-Path $config "policies/obj-$Kind.json") | ConvertFrom-Json).repository | Should -Be $named
    }

    It 'backs up into the bucket from wherever the run starts, and nothing local' {
        $run = Invoke-Elsewhere $runIn "Invoke-BackupPolicy -Name obj-$Kind -ErrorAction Stop | Select-Object Succeeded, BackupId, Error | ConvertTo-Json -Compress"
        $run.ExitCode | Should -Be 0 -Because $run.Output
        $record = $run.Output | ConvertFrom-Json
        $record.Succeeded | Should -BeTrue
        $backups = @(Get-VolumeBackup -Repository $name)
        $backups.Id | Should -Contain ([guid]$record.BackupId)
        Get-ChildItem -LiteralPath $runIn -Force | Should -BeNullOrEmpty
        Get-ChildItem -LiteralPath $madeIn -Force | Should -BeNullOrEmpty
        $target = Join-Path $TestDrive "restored-$Kind.img"
        Restore-VolumeBackup -Repository $name -BackupId $record.BackupId -TargetPath $target | Out-Null
        Get-Sha $target | Should -Be (Get-Sha $volume)
    }

    # A name, not a URL, stands for the registration alone (a URL still finds its bucket through the environment).
    if ($ByName) {
        It 'fails the run once the registration is gone (RepositoryNotRegistered, Failing), writing nothing anywhere' {
            $before = @(Get-VolumeBackup -Repository $name).Count
            $registration = Get-Content -Raw -LiteralPath (Join-Path $config "repositories/$name.json")
            $secret = Get-Content -Raw -LiteralPath (Join-Path $config "repositories/$name.secret")
            Unregister-BackupRepository -Name $name -Confirm:$false
            try {
                $run = Invoke-Elsewhere $runIn "try { Invoke-BackupPolicy -Name obj-$Kind -ErrorAction Stop | Out-Null } catch { `$_.Exception.Message; exit 1 }"
                $run.ExitCode | Should -Not -Be 0
                $run.Output | Should -Match "backs up into the registered repository '$name', which is not registered"
                $status = Get-BackupPolicyStatus -Name "obj-$Kind"
                $status.Health | Should -Be 'Failing'
                Get-ChildItem -LiteralPath $runIn -Force | Should -BeNullOrEmpty
            }
            finally {
                # The same registration again (as a user restores it), so the bucket can be emptied.
                New-Item -ItemType Directory -Force -Path (Join-Path $config 'repositories') | Out-Null
                Set-Content -LiteralPath (Join-Path $config "repositories/$name.json") -Value $registration -NoNewline
                Set-Content -LiteralPath (Join-Path $config "repositories/$name.secret") -Value $secret -NoNewline
                if (-not $IsWindows) { chmod 600 (Join-Path $config "repositories/$name.secret") (Join-Path $config "repositories/$name.json") }
            }
            @(Get-VolumeBackup -Repository $name).Count | Should -Be $before
        }
    }
}

Describe 'Policy repositories typed as paths' {
    It 'keeps a relative directory absolute against the caller''s location, and an unregistered bare name as a directory there' {
        Push-Location -LiteralPath $TestDrive
        try {
            (New-BackupPolicy -Name rel -Path $volume -Repository ./rel-repo -Schedule '0 2 * * *' -KeepLast 1).Repository | Should -Be (Join-Path $TestDrive 'rel-repo')
            (New-BackupPolicy -Name bare -Path $volume -Repository bare-repo -Schedule '0 2 * * *' -KeepLast 1).Repository | Should -Be (Join-Path $TestDrive 'bare-repo')
        }
        finally {
            Pop-Location
            Remove-BackupPolicy -Name rel -Confirm:$false
            Remove-BackupPolicy -Name bare -Confirm:$false
        }
    }

    It 'refuses a URL of another kind when the policy is made, and creates nothing' {
        { New-BackupPolicy -Name gcs -Path $volume -Repository 'gs://bucket' -Schedule '0 2 * * *' -KeepLast 1 -ErrorAction Stop } | Should -Throw -ErrorId 'RepositoryKindNotSupported*'
        Test-Path -LiteralPath (Join-Path $config 'policies/gcs.json') | Should -BeFalse
    }

    It 'fails a run whose hand-edited policy names a relative directory (RepositoryPathNotAbsolute), writing nothing' {
        $repo = Join-Path $TestDrive 'edited-repo'
        New-BackupPolicy -Name edited -Path $volume -Repository $repo -Schedule '0 2 * * *' -KeepLast 1 | Out-Null
        $file = Join-Path $config 'policies/edited.json'
        $json = Get-Content -Raw -LiteralPath $file | ConvertFrom-Json -AsHashtable
        $json.repository = 'some/relative/dir'
        $json | ConvertTo-Json -Depth 5 | Set-Content -LiteralPath $file
        $where = Join-Path $TestDrive 'cwd-edited'
        $run = Invoke-Elsewhere $where 'try { Invoke-BackupPolicy -Name edited -ErrorAction Stop | Out-Null } catch { $_.Exception.Message; exit 1 }'
        $run.ExitCode | Should -Not -Be 0
        $run.Output | Should -Match 'RepositoryPathNotAbsolute|not an absolute path'
        Get-ChildItem -LiteralPath $where -Force | Should -BeNullOrEmpty
        Remove-BackupPolicy -Name edited -Confirm:$false
    }
}

Describe 'Volumes a policy names that do not exist' {
    It 'warns about a literal path that does not exist (a typo), not about a wildcard, and still creates the policy' {
        $missing = Join-Path $TestDrive 'nope.img'
        New-BackupPolicy -Name typo -Path $missing, (Join-Path $TestDrive '*.none') -Repository (Join-Path $TestDrive 'typo-repo') -Schedule '0 2 * * *' -KeepLast 1 -WarningVariable warned -WarningAction SilentlyContinue | Out-Null
        @($warned).Count | Should -Be 1
        "$($warned[0])" | Should -Be "Policy 'typo': the volume '$missing' does not exist now; its backups fail (VolumeNotFound) until it does."
        Set-BackupPolicy -Name typo -Path $volume -WarningVariable none -WarningAction SilentlyContinue
        @($none).Count | Should -Be 0
        Remove-BackupPolicy -Name typo -Confirm:$false
    }
}

Describe 'One unreadable policy among the due ones' {
    It 'is reported naming its file; the other due policies run; the exit code says something failed' {
        $repo = Join-Path $TestDrive 'due-repo'
        foreach ($n in 'aaa', 'bbb', 'ccc') {
            # Due at once: a schedule every minute, made a while ago.
            New-BackupPolicy -Name $n -Path $volume -Repository $repo -Schedule '* * * * *' -KeepLast 5 | Out-Null
            $file = Join-Path $config "policies/$n.json"
            $json = Get-Content -Raw -LiteralPath $file | ConvertFrom-Json -AsHashtable
            $json.createdUtc = [DateTime]::UtcNow.AddHours(-1).ToString('o')
            $json | ConvertTo-Json -Depth 5 | Set-Content -LiteralPath $file
        }
        $broken = Join-Path $config 'policies/aaa.json'
        $text = Get-Content -Raw -LiteralPath $broken
        Set-Content -LiteralPath $broken -Value $text.Substring(0, $text.Length / 2) -NoNewline

        # The scheduler's own command: one error, after every due policy ran, ends it with exit 1.
        $run = Invoke-Elsewhere (Join-Path $TestDrive 'cwd-due') 'try { Invoke-BackupPolicy -Due -ErrorAction Stop | ForEach-Object { "ran $($_.Policy) $($_.Succeeded)" } } catch { $_.Exception.Message; exit 1 }'
        $run.ExitCode | Should -Not -Be 0
        $run.Output | Should -Match 'ran bbb True'
        $run.Output | Should -Match 'ran ccc True'
        $run.Output | Should -Match ([regex]::Escape($broken))
        @(Get-VolumeBackup -Repository $repo).Count | Should -Be 2
        Remove-Item -LiteralPath $broken
        Remove-BackupPolicy -Name bbb -Confirm:$false
        Remove-BackupPolicy -Name ccc -Confirm:$false
    }
}

Describe 'The DSC resource''s locations' {
    BeforeAll {
        $script:dsc = (Get-Module BlockBackup).NestedModules | Where-Object Name -EQ 'BlockBackup.Dsc'
        function script:New-Resource {
            param([hashtable] $Properties)
            & $dsc { param($p) $r = [BlockBackupPolicy]::new(); foreach ($k in $p.Keys) { $r.$k = $p[$k] }; $r } $Properties
        }
    }

    It 'refuses <Case> before anything is written' -ForEach @(
        @{ Case = 'a relative repository path'; Properties = @{ Repository = './relrepo' }; Expected = "Property 'repository': './relrepo' is a relative path" }
        @{ Case = 'an unregistered bare name'; Properties = @{ Repository = 'nosuchname' }; Expected = "Property 'repository': no repository 'nosuchname' is registered" }
        @{ Case = 'a relative volume path'; Properties = @{ Path = @('disk.img') }; Expected = "Property 'path': 'disk.img' is not an absolute path" }
    ) {
        $declared = @{ Name = 'dscloc'; Ensure = 'Present'; Path = @($volume); Repository = (Join-Path $TestDrive 'dsc-loc-repo'); Schedule = '0 2 * * *'; KeepLast = 1; ScheduleDestination = (Join-Path $TestDrive 'dsc-loc-units') }
        foreach ($k in $Properties.Keys) { $declared[$k] = $Properties[$k] }
        $resource = New-Resource $declared
        { $resource.Set() } | Should -Throw "*$Expected*"
        { $resource.Test() } | Should -Throw "*$Expected*"
        Test-Path -LiteralPath (Join-Path $config 'policies/dscloc.json') | Should -BeFalse
        Test-Path -LiteralPath (Join-Path $TestDrive 'dsc-loc-units') | Should -BeFalse
    }
}
