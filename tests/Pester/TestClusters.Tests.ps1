#Requires -Version 7.4
#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }

# The project's own test-cluster scripts (tests/ceph): what a developer does with them by hand must
# never throw away a gateway's data. Starts its own throwaway cluster on free ports.

$cephMissing = @('radosgw', 'radosgw-admin', 'ceph-mon', 'ceph-osd', 'curl' | Where-Object { -not (Get-Command $_ -CommandType Application -ErrorAction SilentlyContinue) }).Count -gt 0

Describe 'rgw-start.sh' -Skip:($cephMissing -or $IsWindows) {
    BeforeAll {
        $script:scripts = Join-Path (Split-Path -Parent $PSScriptRoot) 'ceph'
        $script:dir = Join-Path ([IO.Path]::GetTempPath()) "bb-rgw-rerun-$PID"
        # A mon port whose gateway port (+10000) is free too, away from the ones CI and developers use.
        $script:monPort = 3400..3499 | Get-Random -Count 100 | Where-Object {
            $free = $true
            foreach ($port in $_, ($_ + 10000)) {
                $client = [Net.Sockets.TcpClient]::new()
                try { $client.Connect('127.0.0.1', $port); $free = $false } catch { } finally { $client.Dispose() }
            }
            $free
        } | Select-Object -First 1

        function script:Start-Gateway {
            $env:MON_PORT = $monPort
            try { $lines = & bash (Join-Path $scripts 'rgw-start.sh') $dir 2>&1 } finally { Remove-Item Env:MON_PORT }
            $values = @{}
            foreach ($line in $lines) { if ("$line" -match '^([A-Z0-9_]+)=(.*)$') { $values[$Matches[1]] = $Matches[2] } }
            [pscustomobject]@{ ExitCode = $LASTEXITCODE; Output = ($lines -join "`n"); Env = $values }
        }
        function script:Get-SwiftToken([hashtable] $values) {
            $response = Invoke-WebRequest -Uri $values.SWIFT_AUTH_URL -Headers @{ 'X-Auth-User' = $values.SWIFT_USER; 'X-Auth-Key' = $values.SWIFT_KEY }
            "$($response.Headers['X-Auth-Token'])"
        }
    }

    AfterAll {
        if (Test-Path -LiteralPath $dir) { & bash (Join-Path $scripts 'rgw-stop.sh') $dir *> $null }
    }

    It 'restarts a gateway that died, keeping its user, keys and objects (a rerun once deleted the cluster)' {
        $first = Start-Gateway
        $first.ExitCode | Should -Be 0 -Because $first.Output
        $token = Get-SwiftToken $first.Env
        $url = "$($first.Env.RGW_ENDPOINT)/swift/v1/rerun-container"
        Invoke-WebRequest -Method Put -Uri $url -Headers @{ 'X-Auth-Token' = $token } | Out-Null
        Invoke-WebRequest -Method Put -Uri "$url/kept" -Headers @{ 'X-Auth-Token' = $token } -Body 'still here' | Out-Null

        # radosgw alone dies (mon and osd live on, with the data): the natural fix is to run the script again.
        Stop-Process -Id ([int]$first.Env.RGW_PID) -Force
        (Get-Process -Id ([int]$first.Env.RGW_PID) -ErrorAction SilentlyContinue) | Wait-Process -Timeout 30 -ErrorAction SilentlyContinue

        $second = Start-Gateway
        $second.ExitCode | Should -Be 0 -Because $second.Output
        $second.Output | Should -Match 'restarting radosgw of the existing cluster'
        $second.Env.RGW_PID | Should -Not -Be $first.Env.RGW_PID
        foreach ($key in 'RGW_ENDPOINT', 'S3_ACCESS_KEY', 'S3_SECRET_KEY', 'SWIFT_USER', 'SWIFT_KEY') { $second.Env[$key] | Should -Be $first.Env[$key] }
        (Select-String -LiteralPath (Join-Path $dir 'ceph.conf') -SimpleMatch '[client.rgw.bb]').Count | Should -Be 1
        $body = Invoke-WebRequest -Uri "$url/kept" -Headers @{ 'X-Auth-Token' = (Get-SwiftToken $second.Env) }
        [Text.Encoding]::UTF8.GetString($body.Content) | Should -Be 'still here'

        # And a rerun while everything runs is a no-op that prints the same environment.
        $third = Start-Gateway
        $third.ExitCode | Should -Be 0 -Because $third.Output
        $third.Output | Should -Match 'already running'
        $third.Env.RGW_PID | Should -Be $second.Env.RGW_PID
    }

    It 'leaves the cluster and its data in place when the restart fails' {
        # rgw.env no longer matches the gateway's user (its key was changed by hand): the restart cannot reuse it and stops, deleting nothing.
        $envFile = Join-Path $dir 'rgw.env'
        (Get-Content -LiteralPath $envFile) -replace '^S3_ACCESS_KEY=.*', 'S3_ACCESS_KEY=NOSUCHKEY0000000000' | Set-Content -LiteralPath $envFile
        $rgwPid = [int](Select-String -LiteralPath $envFile -Pattern '^RGW_PID=(\d+)').Matches[0].Groups[1].Value
        Stop-Process -Id $rgwPid -Force
        (Get-Process -Id $rgwPid -ErrorAction SilentlyContinue) | Wait-Process -Timeout 30 -ErrorAction SilentlyContinue

        $rerun = Start-Gateway
        $rerun.ExitCode | Should -Not -Be 0
        $rerun.Output | Should -Match 'left as they were'
        Test-Path -LiteralPath (Join-Path $dir 'ceph.conf') | Should -BeTrue
        Test-Path -LiteralPath $envFile | Should -BeTrue
        Test-Path -LiteralPath (Join-Path $dir 'osd.0') | Should -BeTrue
    }
}
