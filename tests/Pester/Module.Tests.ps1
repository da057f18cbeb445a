#Requires -Version 7.4
#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
}

AfterAll {
    Remove-Module BlockBackup -ErrorAction SilentlyContinue
}

BeforeDiscovery {
    $script:cmdlets = @(
        'Dismount-VolumeBackup',
        'Export-VolumeBackupRecord',
        'Get-BackupChain',
        'Get-BackupPolicy',
        'Get-BackupPolicyStatus',
        'Get-BackupRepository',
        'Get-BackupSchedule',
        'Get-VolumeBackup',
        'Get-VolumeBackupMount',
        'Import-VolumeBackupRecord',
        'Invoke-BackupPolicy',
        'Limit-VolumeBackup',
        'Mount-VolumeBackup',
        'New-BackupPolicy',
        'New-VolumeBackup',
        'Register-BackupRepository',
        'Register-BackupSchedule',
        'Remove-BackupPolicy',
        'Remove-VolumeBackup',
        'Restore-VolumeBackup',
        'Set-BackupPolicy',
        'Test-VolumeBackup',
        'Unregister-BackupRepository',
        'Unregister-BackupSchedule') | Sort-Object
}

Describe 'The module' {
    It 'exports exactly its cmdlets' -TestCases @{ Expected = $cmdlets } {
        (Get-Command -Module BlockBackup).Name | Sort-Object | Should -Be $Expected
    }

    It 'has help with a synopsis and at least two examples for <_>' -ForEach $cmdlets {
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

Describe 'The README, as written' {
    BeforeAll {
        $script:readme = Get-Content -Raw -LiteralPath (Join-Path $repoRoot 'README.md')
        # The README's ```powershell blocks, in order.
        $script:blocks = [regex]::Matches($readme, '(?ms)^```powershell\r?\n(.*?)^```') | ForEach-Object { $_.Groups[1].Value }
        $script:work = Join-Path $TestDrive 'readme'
        New-Item -ItemType Directory -Path $work | Out-Null

        # Runs a README block in a fresh pwsh, as a user would paste it, in $work.
        function script:Invoke-ReadmeBlock {
            param([string] $Code, [hashtable] $Environment = @{})
            $file = Join-Path $TestDrive "block-$([guid]::NewGuid()).ps1"
            Set-Content -LiteralPath $file -Value "`$ErrorActionPreference = 'Stop'`n`$ProgressPreference = 'SilentlyContinue'`nSet-Location -LiteralPath '$work'`n$Code"
            $saved = @{}
            foreach ($name in $Environment.Keys) { $saved[$name] = [Environment]::GetEnvironmentVariable($name); [Environment]::SetEnvironmentVariable($name, $Environment[$name]) }
            try {
                $output = & $Pwsh -NoProfile -NonInteractive -File $file 2>&1
                [pscustomobject]@{ ExitCode = $LASTEXITCODE; Output = ($output | Out-String) -replace '\e\[[0-9;]*m' }   # no colours in assertions
            }
            finally {
                foreach ($name in $saved.Keys) { [Environment]::SetEnvironmentVariable($name, $saved[$name]) }
            }
        }
    }

    It 'has its first screen: set-up in one command, then back up, list, restore and verify' {
        $setup = [regex]::Match($readme, '(?ms)^```sh\r?\n(.*?)^```').Groups[1].Value
        $setup | Should -Match 'dotnet tool restore && dotnet build && dotnet pwsh'
        $readme | Should -Match ([regex]::Escape('dotnet pwsh ./build.ps1 -Task Test'))
        $first = $blocks[0]
        $first | Should -Match 'New-VolumeBackup' -Because 'the first block backs up'
        # Run from the clone the README assumes: its module path points at this build.
        $result = Invoke-ReadmeBlock ($first.Replace('./out/BlockBackup/BlockBackup.psd1', $ModuleManifest))
        $result.ExitCode | Should -Be 0 -Because $result.Output
        $result.Output | Should -Match 'IsValid|True'
        Get-Sha (Join-Path $work 'restored.img') | Should -Be (Get-Sha (Join-Path $work 'disk.img'))
        $backups = Get-VolumeBackup -Repository (Join-Path $work 'backups')
        $backups.Type | Should -Be @('Full', 'Incremental')
        $backups[0].Name | Should -Be 'first'
    }

    It 'has a runbook that makes a full backup when it must and an incremental when it can, with the module installed by build.ps1' -Skip:(-not $IsLinux) {
        $runbook = $blocks | Where-Object { $_ -match 'Import-Module BlockBackup' } | Select-Object -First 1
        $runbook | Should -Not -BeNullOrEmpty
        $data = Join-Path $TestDrive 'xdg-data'
        $install = & $Pwsh -NoProfile -NonInteractive -Command "`$env:XDG_DATA_HOME = '$data'; & '$(Join-Path $repoRoot 'build.ps1')' -Task Install" 2>&1
        $LASTEXITCODE | Should -Be 0 -Because ($install | Out-String)
        Test-Path (Join-Path $data 'powershell/Modules/BlockBackup/*/BlockBackup.psd1') | Should -BeTrue

        $repository = Join-Path $work 'backups'
        Remove-Item -LiteralPath $repository -Recurse -Force -ErrorAction SilentlyContinue
        New-TestVolume -Path (Join-Path $work 'disk.img') -MiB 4 -Seed 40
        $night1 = Invoke-ReadmeBlock $runbook @{ XDG_DATA_HOME = $data }
        $night1.ExitCode | Should -Be 0 -Because $night1.Output
        $night1.Output | Should -Match 'A full backup instead'
        Edit-TestVolume -Path (Join-Path $work 'disk.img') -Seed 41
        Start-Sleep -Seconds 1   # the backup names carry the time to the second
        $night2 = Invoke-ReadmeBlock $runbook @{ XDG_DATA_HOME = $data }
        $night2.ExitCode | Should -Be 0 -Because $night2.Output
        $night2.Output | Should -Not -Match 'A full backup instead'
        # The volume grew: a full backup again.
        $stream = [System.IO.File]::Open((Join-Path $work 'disk.img'), 'Open', 'ReadWrite'); $stream.SetLength(6MB); $stream.Dispose()
        Start-Sleep -Seconds 1
        $night3 = Invoke-ReadmeBlock $runbook @{ XDG_DATA_HOME = $data }
        $night3.ExitCode | Should -Be 0 -Because $night3.Output
        $night3.Output | Should -Match 'A full backup instead.*grew'
        # Each night's Limit-VolumeBackup (-KeepDaily 7): all three ran today, so today's newest is kept, and
        # (as restic counts) the oldest, since daily buckets are left; the incremental between them goes.
        (Get-VolumeBackup -Repository $repository).Type | Should -Be @('Full', 'Full')

        $chainBlock = $blocks | Where-Object { $_ -match 'Measure-Object StoredBytes' } | Select-Object -First 1
        $sum = Invoke-ReadmeBlock $chainBlock @{ XDG_DATA_HOME = $data }   # the installed module autoloads
        $sum.ExitCode | Should -Be 0 -Because $sum.Output
        $sum.Output | Should -Match 'Count\s*:\s*1'
    }

    It 'has an object-storage block that works as written against a real S3/Swift endpoint' -Skip:(-not ($env:BLOCKBACKUP_S3_ENDPOINT -and $env:BLOCKBACKUP_SWIFT_AUTH_URL)) {
        $block = $blocks | Where-Object { $_ -match 'Register-BackupRepository -Name offsite ' } | Select-Object -First 1
        $block | Should -Not -BeNullOrEmpty
        $bucket = "readme-$(([guid]::NewGuid().ToString('N')).Substring(0, 12))"
        # As written, pointed at the test gateway: its endpoints, a fresh bucket, and the credential
        # Get-Credential would prompt for.
        $code = $block.Replace('https://s3.example.com', $env:BLOCKBACKUP_S3_ENDPOINT).
            Replace('https://rgw.example.com/auth/v1.0', $env:BLOCKBACKUP_SWIFT_AUTH_URL).
            Replace('s3://volumebackups', "s3://$bucket").Replace('swift://volumebackups', "swift://$bucket").
            Replace('AKIAIOSFODNN7EXAMPLE', $env:BLOCKBACKUP_S3_ACCESS_KEY)
        $credentials = "function Get-Credential { if (`$script:asked++) { [pscredential]::new('$($env:BLOCKBACKUP_SWIFT_USER)', (ConvertTo-SecureString '$($env:BLOCKBACKUP_SWIFT_KEY)' -AsPlainText -Force)) } else { [pscredential]::new('$($env:BLOCKBACKUP_S3_ACCESS_KEY)', (ConvertTo-SecureString '$($env:BLOCKBACKUP_S3_SECRET_KEY)' -AsPlainText -Force)) } }`n`$script:asked = 0`n"
        New-TestVolume -Path (Join-Path $work 'disk.img') -MiB 3 -Seed 44
        Remove-Item -LiteralPath (Join-Path $work 'restored.img') -ErrorAction SilentlyContinue
        $config = Join-Path $TestDrive 'readme-objstore-config'
        $result = Invoke-ReadmeBlock ("Import-Module '$ModuleManifest'`n" + $credentials + $code) @{ BLOCKBACKUP_CONFIG_DIR = $config; OFFSITE_S3_SECRET = $env:BLOCKBACKUP_S3_SECRET_KEY }
        $result.ExitCode | Should -Be 0 -Because $result.Output
        $result.Output | Should -Match 'cinder.backup.drivers.s3.S3BackupDriver'
        Get-Sha (Join-Path $work 'restored.img') | Should -Be (Get-Sha (Join-Path $work 'disk.img'))
        (Get-ChildItem -LiteralPath (Join-Path $config 'repositories') -Filter *.json).BaseName | Sort-Object | Should -Be @('offsite', 'swift-offsite')
    }

    It 'has a policy-based nightly setup that works as written' -Skip:(-not $IsLinux) {
        $block = $blocks | Where-Object { $_ -match 'New-BackupPolicy' } | Select-Object -First 1
        $block | Should -Not -BeNullOrEmpty
        $units = Join-Path $TestDrive 'readme-units'
        # As written, except that the scheduler entry is written for review instead of installed on this machine.
        $code = $block.Replace('Register-BackupSchedule    ', "Register-BackupSchedule -Destination '$(Join-Path $units 'blockbackup')' -Kind Cron    ")
        $code | Should -Not -Be $block
        $config = Join-Path $TestDrive 'readme-config'
        New-TestVolume -Path (Join-Path $work 'disk.img') -MiB 2 -Seed 42
        $result = Invoke-ReadmeBlock ("Import-Module '$ModuleManifest'`n" + $code) @{ BLOCKBACKUP_CONFIG_DIR = $config }
        $result.ExitCode | Should -Be 0 -Because $result.Output
        $result.Output | Should -Match '"Health": "Healthy"'
        Test-Path -LiteralPath (Join-Path $config 'policies/nightly.json') | Should -BeTrue
        Get-Content -Raw -LiteralPath (Join-Path $units 'blockbackup') | Should -Match 'Invoke-BackupPolicy -Due'
    }
}
