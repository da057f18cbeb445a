#Requires -Version 7.4
#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }
<#
    Policy times on hosts that are not on UTC (most servers that run scheduled backups): a run's
    time is read back as the instant it was, whatever TZ the reading process has. Each case runs
    the cmdlets in a child pwsh with that TZ (and, for "later", a faketime clock a few minutes on).
#>

BeforeDiscovery {
    $script:zones = @('UTC', 'Asia/Tokyo', 'America/New_York', 'Europe/Berlin', 'Australia/Lord_Howe') |
        Where-Object { Test-Path -LiteralPath "/usr/share/zoneinfo/$_" } | ForEach-Object { @{ Zone = $_ } }
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')

    # Runs a script in a child pwsh with TZ=$Zone (and a clock at $At, through libfaketime, when given).
    function script:Invoke-InZone {
        param([string] $Zone, [string] $Config, [string] $Script, [Nullable[datetime]] $At)
        $file = Join-Path $TestDrive "tz-$([guid]::NewGuid()).ps1"
        Set-Content -LiteralPath $file -Value "`$ProgressPreference = 'SilentlyContinue'; Import-Module '$ModuleManifest'; $Script"
        $saved = $env:TZ, $env:BLOCKBACKUP_CONFIG_DIR
        $env:TZ = $Zone; $env:BLOCKBACKUP_CONFIG_DIR = $Config
        try {
            $output = if ($At) {
                & faketime (([datetime]$At).ToUniversalTime().ToString('yyyy-MM-dd HH:mm:ss') + ' UTC') $Pwsh -NoProfile -NonInteractive -File $file 2>&1
            }
            else {
                & $Pwsh -NoProfile -NonInteractive -File $file 2>&1
            }
        }
        finally {
            $env:TZ, $env:BLOCKBACKUP_CONFIG_DIR = $saved
        }
        [pscustomobject]@{ ExitCode = $LASTEXITCODE; Output = ($output | Out-String) }
    }
}

AfterAll {
    Remove-Module BlockBackup -ErrorAction SilentlyContinue
}

Describe 'A policy run read back under TZ=<Zone>' -Skip:(-not $IsLinux -or -not (Get-Command faketime -ErrorAction SilentlyContinue)) -ForEach $zones {
    BeforeAll {
        $safe = $Zone -replace '[^A-Za-z0-9]', '-'
        $script:config = Join-Path $TestDrive "config-$safe"
        $script:volume = Join-Path $TestDrive "tz-$safe.img"
        New-TestVolume -Path $volume -MiB 1 -Seed 3
        $script:repo = Join-Path $TestDrive "repo-$safe"
        # Every minute in the host's own zone (no -TimeZone): the run and the next are minutes apart.
        $made = Invoke-InZone $Zone $config "New-BackupPolicy -Name tz -Path '$volume' -Repository '$repo' -Schedule '* * * * *' -KeepLast 10 | Out-Null; Invoke-BackupPolicy -Name tz -ErrorAction Stop | ForEach-Object { `$_.StartedUtc.ToString('o') }"
        $made.ExitCode | Should -Be 0 -Because $made.Output
        $script:ranAt = [DateTimeOffset]::Parse(($made.Output -split "`n" | Where-Object { $_ -match '^\d{4}-' } | Select-Object -First 1).Trim(), [cultureinfo]::InvariantCulture)
    }

    It 'reports the run as the instant it was: Healthy, a few seconds old' {
        $status = Invoke-InZone $Zone $config 'Get-BackupPolicyStatus -Name tz | ForEach-Object { "$($_.Health) $($_.LastSuccessAgeSeconds) $($_.LastRunUtc.ToString(''o''))" }'
        $status.ExitCode | Should -Be 0 -Because $status.Output
        $health, $age, $lastRun = ($status.Output.Trim() -split ' ')
        $health | Should -Be 'Healthy'
        [double]$age | Should -BeGreaterOrEqual 0
        [double]$age | Should -BeLessThan 900 -Because 'the run was minutes ago, not hours (a shifted time is off by the zone''s offset)'
        ([DateTimeOffset]::Parse($lastRun, [cultureinfo]::InvariantCulture) - $ranAt).Duration().TotalSeconds | Should -BeLessThan 1
    }

    It 'is due again at the next minute, not hours later' {
        $later = Invoke-InZone $Zone $config 'Invoke-BackupPolicy -Due -ErrorAction Stop | ForEach-Object { "ran $($_.Policy) $($_.Succeeded)" }' -At ([datetime]::UtcNow.AddMinutes(3))
        $later.ExitCode | Should -Be 0 -Because $later.Output
        $later.Output | Should -Match 'ran tz True'
    }

    It 'is not Late three minutes on (Late needs a missed run plus the grace)' {
        $status = Invoke-InZone $Zone $config 'Get-BackupPolicyStatus -Name tz | ForEach-Object Health' -At ([datetime]::UtcNow.AddMinutes(3))
        $status.Output.Trim() | Should -Be 'Healthy'
    }

    It 'is Late once a run is missed by more than the grace' {
        $status = Invoke-InZone $Zone $config 'Get-BackupPolicyStatus -Name tz | ForEach-Object Health' -At ([datetime]::UtcNow.AddHours(2))
        $status.Output.Trim() | Should -Be 'Late'
    }
}
