#Requires -Version 7.4
#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }
<#
    Register-/Get-/Unregister-BackupSchedule: the exact scheduler files (into a -Destination, so
    the machine's own scheduler is not touched), checked by the tools that read them: systemd's
    own verifier, and the cron line run by /bin/sh as cron would run it.
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
}

AfterAll {
    Remove-Module BlockBackup -ErrorAction SilentlyContinue
}

Describe 'Register-BackupSchedule with systemd' -Skip:(-not $IsLinux) {
    BeforeAll {
        $script:units = Join-Path $TestDrive 'units'
    }

    It 'writes a service and a Persistent timer that systemd-analyze verify accepts' {
        $registration = Register-BackupSchedule -Kind Systemd -Destination $units -EveryMinutes 10 -Confirm:$false -PassThru
        $registration.IsRegistered | Should -BeTrue
        $registration.IsCurrent | Should -BeTrue
        $service = Get-Content -Raw -LiteralPath (Join-Path $units 'blockbackup.service')
        $timer = Get-Content -Raw -LiteralPath (Join-Path $units 'blockbackup.timer')
        $service | Should -Match ([regex]::Escape("ExecStart=`"$Pwsh`" -NoProfile -NonInteractive -Command `"Import-Module '$ModuleManifest'; Invoke-BackupPolicy -Due -ErrorAction Stop`""))
        $service | Should -Match '(?m)^Type=oneshot$'
        $timer | Should -Match '(?m)^OnCalendar=\*-\*-\* \*:00/10:00$'
        $timer | Should -Match '(?m)^Persistent=true$'
        $output = & systemd-analyze verify (Join-Path $units 'blockbackup.service') (Join-Path $units 'blockbackup.timer') 2>&1
        $LASTEXITCODE | Should -Be 0 -Because ($output | Out-String)
        & systemd-analyze calendar '*-*-* *:00/10:00' 2>&1 | Out-String | Should -Match 'Next elapse'
    }

    It 'is idempotent: registering again rewrites nothing' {
        $before = (Get-Item -LiteralPath (Join-Path $units 'blockbackup.timer')).LastWriteTimeUtc
        Start-Sleep -Milliseconds 50
        $verbose = Register-BackupSchedule -Kind Systemd -Destination $units -EveryMinutes 10 -Confirm:$false -Verbose 4>&1
        ($verbose.Message -join "`n") | Should -Match 'already current'
        (Get-Item -LiteralPath (Join-Path $units 'blockbackup.timer')).LastWriteTimeUtc | Should -Be $before
        @(Get-ChildItem -LiteralPath $units).Count | Should -Be 2
        (Get-BackupSchedule -Kind Systemd -Destination $units -EveryMinutes 10).IsCurrent | Should -BeTrue
        (Get-BackupSchedule -Kind Systemd -Destination $units -EveryMinutes 15).IsCurrent | Should -BeFalse
    }

    It 'carries BLOCKBACKUP_CONFIG_DIR into the entry' {
        $env:BLOCKBACKUP_CONFIG_DIR = Join-Path $TestDrive 'config'
        try {
            Register-BackupSchedule -Kind Systemd -Destination $units -EveryMinutes 10 -Confirm:$false
            Get-Content -Raw -LiteralPath (Join-Path $units 'blockbackup.service') | Should -Match ([regex]::Escape("Environment=`"BLOCKBACKUP_CONFIG_DIR=$(Join-Path $TestDrive 'config')`""))
        }
        finally {
            Remove-Item Env:BLOCKBACKUP_CONFIG_DIR
        }
    }

    It 'removes both files with Unregister-BackupSchedule' {
        (Unregister-BackupSchedule -Kind Systemd -Destination $units -Confirm:$false -PassThru).IsRegistered | Should -BeFalse
        Get-ChildItem -LiteralPath $units | Should -BeNullOrEmpty
    }

    It 'refuses an interval that does not divide an hour' {
        { Register-BackupSchedule -Kind Systemd -Destination $units -EveryMinutes 7 -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidScheduleInterval*'
        Test-Path -LiteralPath (Join-Path $units 'blockbackup.timer') | Should -BeFalse
    }
}

Describe 'Register-BackupSchedule with cron' -Skip:(-not $IsLinux) {
    BeforeAll {
        $script:cronFile = Join-Path $TestDrive 'cron.d/blockbackup'
        $script:log = Join-Path $TestDrive 'logs/blockbackup.log'
    }

    It 'writes one cron.d entry (mode 0644, as cron requires) whose schedule parses' {
        Register-BackupSchedule -Kind Cron -Destination $cronFile -LogFile $log -Confirm:$false
        Register-BackupSchedule -Kind Cron -Destination $cronFile -LogFile $log -Confirm:$false
        $lines = @(Get-Content -LiteralPath $cronFile | Where-Object { $_ -match '# blockbackup$' })
        $lines.Count | Should -Be 1
        (Get-Item -LiteralPath $cronFile).UnixFileMode | Should -Be ([System.IO.UnixFileMode]'UserRead, UserWrite, GroupRead, OtherRead')
        $fields = $lines[0] -split ' '
        $fields[0..4] -join ' ' | Should -Be '*/5 * * * *'
        $fields[5] | Should -Be ([Environment]::UserName)
        Add-Type -LiteralPath (Join-Path (Split-Path -Parent $ModuleManifest) 'Cronos.dll')   # the parser the module ships
        $cron = [Cronos.CronExpression]::Parse(($fields[0..4] -join ' '))
        $next = $cron.GetNextOccurrence([DateTime]::new(2026, 12, 1, 10, 2, 0, [DateTimeKind]::Utc))
        $next | Should -Be ([DateTime]::new(2026, 12, 1, 10, 5, 0, [DateTimeKind]::Utc))
        (Get-BackupSchedule -Kind Cron -Destination $cronFile -LogFile $log).IsCurrent | Should -BeTrue
    }

    It 'runs as cron runs it (/bin/sh): every due policy, logged, exit code 0 when nothing failed' {
        $line = Get-Content -LiteralPath $cronFile | Where-Object { $_ -match '# blockbackup$' }
        $command = ($line -split ' ', 7)[6]   # after the five time fields and the user
        $env:BLOCKBACKUP_CONFIG_DIR = Join-Path $TestDrive 'empty-config'
        try {
            & /bin/sh -c $command
            $LASTEXITCODE | Should -Be 0
        }
        finally {
            Remove-Item Env:BLOCKBACKUP_CONFIG_DIR
        }
        Test-Path -LiteralPath $log | Should -BeTrue
    }

    It 'removes the file with Unregister-BackupSchedule' {
        Unregister-BackupSchedule -Kind Cron -Destination $cronFile -Confirm:$false
        Test-Path -LiteralPath $cronFile | Should -BeFalse
        (Get-BackupSchedule -Kind Cron -Destination $cronFile).IsRegistered | Should -BeFalse
    }
}
