#Requires -Version 7.4
#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }
<#
    Monitoring of unattended runs: the policy status in Prometheus' text format, as
    node_exporter's textfile collector reads it, written by Get-BackupPolicyStatus -MetricsPath and
    by every Invoke-BackupPolicy run when BLOCKBACKUP_METRICS_PATH is set; parsed back with
    Prometheus' own Python parser (prometheus_client, Debian's python3-prometheus-client).
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:savedConfig = $env:BLOCKBACKUP_CONFIG_DIR
    $script:config = Join-Path $TestDrive 'config'
    $env:BLOCKBACKUP_CONFIG_DIR = $config

    # The samples of a textfile, as Prometheus parses them: one object per sample.
    function script:Read-Metrics([string] $Path) {
        $parser = 'import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in family.samples:
        out.append({"name": s.name, "labels": s.labels, "value": s.value, "type": family.type})
print(json.dumps(out))'
        $json = & /usr/bin/python3 -c $parser $Path
        if ($LASTEXITCODE -ne 0) { throw "Prometheus' parser refused $Path" }
        $json | ConvertFrom-Json
    }
}

AfterAll {
    $env:BLOCKBACKUP_CONFIG_DIR = $script:savedConfig
    Remove-Module BlockBackup -ErrorAction SilentlyContinue
}

$parserMissing = $true
if (Test-Path /usr/bin/python3) {
    & /usr/bin/python3 -c 'import prometheus_client' 2>$null
    $parserMissing = $LASTEXITCODE -ne 0
}

Describe 'Policy metrics for node_exporter' -Skip:$parserMissing {
    BeforeAll {
        $script:volume = Join-Path $TestDrive 'metrics.img'
        New-TestVolume -Path $volume -MiB 1 -Seed 81
        $script:missing = Join-Path $TestDrive 'gone "quoted" \ volume.img'
        New-BackupPolicy -Name healthy -Path $volume -Repository (Join-Path $TestDrive 'm-repo') -Schedule '0 2 * * *' -KeepLast 3 | Out-Null
        New-BackupPolicy -Name failing -Path $missing -Repository (Join-Path $TestDrive 'm-repo2') -Schedule '0 2 * * *' -KeepLast 3 -WarningAction SilentlyContinue | Out-Null
        $script:metrics = Join-Path $TestDrive 'textfile/blockbackup.prom'
        New-Item -ItemType Directory -Path (Split-Path $metrics) | Out-Null
    }

    It 'is written by every run when BLOCKBACKUP_METRICS_PATH is set, also when a run fails, and parses as Prometheus text' {
        $env:BLOCKBACKUP_METRICS_PATH = $metrics
        try {
            & $Pwsh -NoProfile -NonInteractive -Command "Import-Module '$ModuleManifest'; Invoke-BackupPolicy -Name * -ErrorAction Stop | Out-Null" *> $null
            $LASTEXITCODE | Should -Not -Be 0 -Because 'one policy failed'
        }
        finally {
            Remove-Item Env:BLOCKBACKUP_METRICS_PATH
        }
        $samples = Read-Metrics $metrics
        function Sample([string] $Name, [string] $Policy, [string] $State) {
            @($samples | Where-Object { $_.name -eq $Name -and $_.labels.policy -eq $Policy -and (-not $State -or $_.labels.state -eq $State) })
        }
        (Sample blockbackup_policy_last_run_success healthy).value | Should -Be 1
        (Sample blockbackup_policy_last_run_success failing).value | Should -Be 0
        (Sample blockbackup_policy_last_run_success failing).labels.volume | Should -Be $missing   # quotes and backslash survive the escaping
        (Sample blockbackup_policy_health healthy Healthy).value | Should -Be 1
        (Sample blockbackup_policy_health failing Failing).value | Should -Be 1
        (@(Sample blockbackup_policy_health healthy) | Measure-Object value -Sum).Sum | Should -Be 1
        (Sample blockbackup_policy_last_success_age_seconds healthy).value | Should -BeLessThan 600
        (Sample blockbackup_policy_stored_bytes healthy).value | Should -BeGreaterThan 0
        (Sample blockbackup_policy_chain_length healthy).value | Should -Be 1
        @(Sample blockbackup_policy_last_success_timestamp_seconds failing) | Should -BeNullOrEmpty -Because 'a volume never backed up has no success time'
        ([DateTimeOffset]::FromUnixTimeMilliseconds([long]((Sample blockbackup_policy_last_success_timestamp_seconds healthy).value * 1000)) - [DateTimeOffset]::UtcNow).Duration().TotalMinutes | Should -BeLessThan 10
        Get-ChildItem -LiteralPath (Split-Path $metrics) -Force | ForEach-Object Name | Should -Be @('blockbackup.prom') -Because 'written atomically: no temporary is left'
    }

    It 'is what Get-BackupPolicyStatus -Format Prometheus prints and -MetricsPath writes' {
        $text = Get-BackupPolicyStatus -Format Prometheus
        $text | Should -BeOfType [string]
        $text | Should -Match '(?m)^# TYPE blockbackup_policy_last_run_success gauge$'
        $other = Join-Path $TestDrive 'textfile/status.prom'
        Get-BackupPolicyStatus -Name healthy -MetricsPath $other | ForEach-Object Policy | Should -Be 'healthy'
        (Read-Metrics $other | ForEach-Object { $_.labels.policy } | Sort-Object -Unique) | Should -Be @('healthy')
    }
}
