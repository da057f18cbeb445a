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
        $service | Should -Match ([regex]::Escape("Environment=`"BLOCKBACKUP_MODULE=$ModuleManifest`""))
        $service | Should -Match ([regex]::Escape("ExecStart=`"$Pwsh`" -NoProfile -NonInteractive -Command `"`$`$PSStyle.OutputRendering = 'PlainText'; Import-Module -Name `$`$env:BLOCKBACKUP_MODULE; Invoke-BackupPolicy -Due -ErrorAction Stop | Format-List | Out-String -Stream -Width 4096`""))
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
        $thrown = { Register-BackupSchedule -Kind Systemd -Destination $units -EveryMinutes 7 -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidScheduleInterval*' -PassThru
        $thrown.Exception.Message | Should -BeLike '-EveryMinutes 7: *'   # the parameter's name, as typed
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

    It 'logs what a log can keep: plain text, no ANSI escape, each record whole however long its volume path or reason' {
        $line = Get-Content -LiteralPath $cronFile | Where-Object { $_ -match '# blockbackup$' }
        $command = ($line -split ' ', 7)[6]
        $env:BLOCKBACKUP_CONFIG_DIR = Join-Path $TestDrive 'log-config'
        try {
            $long = Join-Path $TestDrive ('a-volume-whose-path-is-longer-than-any-terminal-' + ('x' * 120))
            New-Item -ItemType Directory -Force -Path $long | Out-Null
            $volume = Join-Path $long 'disk.img'
            New-TestVolume -Path $volume -MiB 1
            $missing = Join-Path $long 'missing.img'
            New-BackupPolicy -Name logged -Path $volume, $missing -Repository (Join-Path $TestDrive 'log-repo') -Schedule '* * * * *' -KeepLast 2 | Out-Null
            # Made an hour ago, so due now (a policy is first due at its schedule's next time after its creation).
            $file = Join-Path $env:BLOCKBACKUP_CONFIG_DIR 'policies/logged.json'
            $json = Get-Content -Raw -LiteralPath $file | ConvertFrom-Json -AsHashtable -DateKind String
            $json.createdUtc = [DateTimeOffset]::UtcNow.AddHours(-1).ToString('o')
            Set-Content -LiteralPath $file -Value ($json | ConvertTo-Json)
            Remove-Item -LiteralPath $log -ErrorAction SilentlyContinue
            & /bin/sh -c $command
            $LASTEXITCODE | Should -Be 1 -Because 'one volume is missing'
        }
        finally {
            Remove-Item Env:BLOCKBACKUP_CONFIG_DIR
        }
        $text = [IO.File]::ReadAllText($log)
        $text | Should -Not -Match ([regex]::Escape([string][char]27)) -Because 'no ANSI escape belongs in a log'
        $text | Should -Not -Match '…' -Because 'nothing is cut'
        @($text -split "`n" | Where-Object { $_ -match "^Volume\s+: $([regex]::Escape($volume))\s*$" }).Count | Should -Be 1 -Because $text
        @($text -split "`n" | Where-Object { $_ -match "^Reason\s+: .{20,}" }).Count | Should -BeGreaterThan 0 -Because $text
        $text | Should -Match ([regex]::Escape($missing)) -Because 'the failing volume is named whole'
    }

    It 'takes an existing directory as -Destination for cron: the entry is the file blockbackup in it, for Get and Unregister too' {
        $dir = Join-Path $TestDrive 'cron-dir'
        New-Item -ItemType Directory -Path $dir | Out-Null
        $registration = Register-BackupSchedule -Kind Cron -Destination $dir -LogFile $log -Confirm:$false -PassThru -ErrorAction Stop
        $registration.IsCurrent | Should -BeTrue
        Get-Content -LiteralPath (Join-Path $dir 'blockbackup') | Where-Object { $_ -match '# blockbackup$' } | Should -Not -BeNullOrEmpty
        (Get-BackupSchedule -Kind Cron -Destination $dir -LogFile $log).IsCurrent | Should -BeTrue
        (Unregister-BackupSchedule -Kind Cron -Destination $dir -Confirm:$false -PassThru).IsRegistered | Should -BeFalse
        Test-Path -LiteralPath (Join-Path $dir 'blockbackup') | Should -BeFalse
        Test-Path -LiteralPath $dir -PathType Container | Should -BeTrue
    }

    It 'removes the file with Unregister-BackupSchedule' {
        Unregister-BackupSchedule -Kind Cron -Destination $cronFile -Confirm:$false
        Test-Path -LiteralPath $cronFile | Should -BeFalse
        (Get-BackupSchedule -Kind Cron -Destination $cronFile).IsRegistered | Should -BeFalse
    }
}

# Paths are quoted by construction: the PowerShell the entries run is a constant (the paths reach it
# through the environment), each path is one word for /bin/sh or systemd, and cron never sees a '%'.
# Each generated entry is taken apart by the tools that read it (/bin/sh runs the cron command,
# systemd-analyze verify checks the unit's ExecStart path) and by PowerShell's own parser.
Describe 'Scheduler entries for paths with quotes, backslashes, % and $' -Skip:(-not $IsLinux) {
    BeforeDiscovery {
        $script:cases = @(
            foreach ($code in 0x2018, 0x2019, 0x201A, 0x201B, 0x201C, 0x201D, 0x201E) { @{ Case = 'U+{0:X4}' -f $code; Text = "a$([char]$code)b" } }
            @{ Case = 'ASCII quotes'; Text = "a'b`"c" }
            @{ Case = 'backslash'; Text = 'a\b\\c\x27\n' }
            @{ Case = 'percent'; Text = 'a%b%%c%n%h\%' }
            @{ Case = 'dollar and backtick'; Text = 'a$b${HOME}$(id)`$c' }
            @{ Case = 'space and semicolon'; Text = 'a b;c & d | e' }
            # The report's injection, in both quoting styles.
            @{ Case = 'injection'; Text = "m$([char]0x201D); New-Item -Path /tmp -Name bbPWNED; $([char]0x201C)x n$([char]0x2019); New-Item -Path /tmp -Name bbPWNED; $([char]0x2018)x '; bbPWNED; `"" }
        )
    }

    BeforeAll {
        $script:argvDump = @'
#!/bin/sh
# Stands in for pwsh: writes its arguments and the entry's variables, each ended by a NUL.
for a in "$@"; do printf '%s\0' "$a"; done > "$DUMP_TO.argv"
printf '%s\0' "$BLOCKBACKUP_MODULE" "${BLOCKBACKUP_CONFIG_DIR-unset}" > "$DUMP_TO.env"
echo logged
'@
        $script:Ast = [System.Management.Automation.Language.Parser]
        # Parses PowerShell and returns its commands, failing on any parse error.
        function script:Get-Commands {
            param([string] $Script)
            $tokens = $null; $errors = $null
            $ast = $Ast::ParseInput($Script, [ref]$tokens, [ref]$errors)
            $errors | Should -BeNullOrEmpty
            @($ast.FindAll({ param($n) $n -is [System.Management.Automation.Language.CommandAst] }, $true))
        }
        # The constant script: exactly $PSStyle.OutputRendering = 'PlainText'; Import-Module -Name $env:BLOCKBACKUP_MODULE;
        # Invoke-BackupPolicy -Due -ErrorAction Stop | Format-List | Out-String -Stream -Width 4096.
        function script:Assert-IntendedScript {
            param([string] $Script)
            $commands = Get-Commands $Script
            $commands.Count | Should -Be 4
            $commands[0].CommandElements.Count | Should -Be 3
            $commands[0].GetCommandName() | Should -Be 'Import-Module'
            $commands[0].CommandElements[1].ParameterName | Should -Be 'Name'
            $commands[0].CommandElements[2].VariablePath.UserPath | Should -Be 'env:BLOCKBACKUP_MODULE'
            @($commands[1..3].Extent.Text) | Should -Be @('Invoke-BackupPolicy -Due -ErrorAction Stop', 'Format-List', 'Out-String -Stream -Width 4096')
            $Script | Should -BeLike "`$PSStyle.OutputRendering = 'PlainText'; *"
        }
        function script:Read-Dump {
            param([string] $Path)
            $parts = [IO.File]::ReadAllText($Path, [Text.Encoding]::UTF8).Split([char]0)
            @($parts[0..($parts.Count - 2)])
        }
        # A directory named with the case's characters holding a stand-in pwsh, the module (a link to the build) and a configuration directory.
        # .NET calls and plain concatenation only: PowerShell's paths would turn a backslash into a '/'.
        function script:New-WeirdTree {
            param([string] $Text)
            $dir = "$TestDrive/$([guid]::NewGuid())/$Text"
            [void][IO.Directory]::CreateDirectory($dir)
            $fake = "$dir/pwsh"
            [IO.File]::WriteAllText($fake, $argvDump)
            [IO.File]::SetUnixFileMode($fake, [IO.UnixFileMode]'UserRead, UserWrite, UserExecute, GroupRead, GroupExecute, OtherRead, OtherExecute')
            [void][IO.Directory]::CreateSymbolicLink("$dir/BlockBackup", (Split-Path -Parent $ModuleManifest))
            [pscustomobject]@{ Dir = $dir; FakePwsh = $fake; Module = "$dir/BlockBackup/BlockBackup.psd1"; Config = "$dir/config"; Log = "$dir/log" }
        }
        function script:New-Entry {
            param($Tree, [string] $PwshPath)
            [BlockBackup.Engine.Scheduling.ScheduleEntry]@{ PwshPath = $PwshPath; ModuleManifest = $Tree.Module; ConfigDirectory = $Tree.Config; LogFile = $Tree.Log; EveryMinutes = 5 }
        }
        # The unit's ExecStart and Environment as systemd reads them, and a run of that argv with that environment.
        function script:Invoke-AsSystemd {
            param([string] $Service, [hashtable] $Extra = @{})
            $lines = [IO.File]::ReadAllLines($Service)
            $exec = Split-SystemdWords (($lines | Where-Object { $_ -like 'ExecStart=*' }).Substring(10)) -Exec
            $environment = @($lines | Where-Object { $_ -like 'Environment=*' } | ForEach-Object { Split-SystemdWords $_.Substring(12) })
            $start = [System.Diagnostics.ProcessStartInfo]::new($exec[0])
            foreach ($a in $exec[1..($exec.Count - 1)]) { $start.ArgumentList.Add($a) }
            foreach ($assignment in $environment) { $name, $value = $assignment -split '=', 2; $start.Environment[$name] = $value }
            foreach ($name in $Extra.Keys) { $start.Environment[$name] = $Extra[$name] }
            $start.RedirectStandardOutput = $true; $start.RedirectStandardError = $true
            $process = [System.Diagnostics.Process]::Start($start)
            $errText = $process.StandardError.ReadToEndAsync(); $null = $process.StandardOutput.ReadToEnd(); $process.WaitForExit()
            [pscustomobject]@{ Exec = $exec; Environment = $environment; ExitCode = $process.ExitCode; Error = $errText.Result }
        }
        # systemd's unquoting of one line's words (systemd.syntax: double quotes, C escapes; %%; $$ in an Exec line's arguments, not its executable).
        function script:Split-SystemdWords {
            param([string] $Line, [switch] $Exec)
            $words = [System.Collections.Generic.List[string]]::new()
            $i = 0
            while ($i -lt $Line.Length) {
                while ($i -lt $Line.Length -and $Line[$i] -eq ' ') { $i++ }
                if ($i -ge $Line.Length) { break }
                $word = [Text.StringBuilder]::new()
                $quoted = $false
                while ($i -lt $Line.Length -and ($quoted -or $Line[$i] -ne ' ')) {
                    $c = $Line[$i]
                    if ($c -eq '"') { $quoted = -not $quoted }
                    elseif ($c -eq '\') { $i++; $next = $Line[$i]; if ($next -notin '\', '"') { throw "unexpected escape \$next in $Line" }; [void]$word.Append($next) }
                    elseif ($c -eq '%') { $i++; if ($Line[$i] -ne '%') { throw "specifier %$($Line[$i]) in $Line" }; [void]$word.Append('%') }
                    elseif ($c -eq '$' -and $Exec -and $words.Count -gt 0) { $i++; if ($Line[$i] -ne '$') { throw "variable in $Line" }; [void]$word.Append('$') }
                    else { [void]$word.Append($c) }
                    $i++
                }
                $quoted | Should -BeFalse -Because "the quotes of '$Line' must balance"
                $words.Add($word.ToString())
            }
            , $words.ToArray()
        }
    }

    It 'cron (<Case>): /bin/sh runs exactly pwsh -NoProfile -NonInteractive -Command and the constant script, with the paths in its environment' -ForEach $cases {
        $tree = New-WeirdTree $Text
        $line = (New-Entry $tree $tree.FakePwsh).CronLine('root')
        $line | Should -Not -Match '%' -Because 'cron turns % into a line break'
        $command = ($line -split ' ', 7)[6]
        $env:DUMP_TO = Join-Path $TestDrive 'cron-dump'
        try {
            & /bin/sh -c $command
            $LASTEXITCODE | Should -Be 0
        }
        finally {
            Remove-Item Env:DUMP_TO
        }
        $argv = Read-Dump "$(Join-Path $TestDrive 'cron-dump').argv"
        $argv | Should -Be @('-NoProfile', '-NonInteractive', '-Command', [BlockBackup.Engine.Scheduling.ScheduleEntry]::Script)
        Assert-IntendedScript $argv[3]
        Read-Dump "$(Join-Path $TestDrive 'cron-dump').env" | Should -Be @($tree.Module, $tree.Config)
        [IO.File]::ReadAllText($tree.Log) | Should -Be "logged`n"   # the log path, exactly
    }

    It 'systemd (<Case>): systemd-analyze verify accepts the unit, and its ExecStart and Environment are exactly the intended words' -ForEach $cases {
        $tree = New-WeirdTree $Text
        $units = Join-Path $TestDrive "units-$([guid]::NewGuid())"
        $installer = [BlockBackup.Engine.Scheduling.ScheduleInstaller]::new('Systemd', $units)
        if ($Text.IndexOfAny([char[]]"'`"\") -ge 0) {
            # systemd itself refuses such an executable ("Executable name contains special characters"): refused here, clearly, and a pwsh elsewhere takes the rest.
            $refused = { $installer.Register((New-Entry $tree $tree.FakePwsh), $null) } | Should -Throw -PassThru
            $refused.Exception.InnerException.ErrorId | Should -Be 'InvalidSchedulePath'
            $refused.Exception.InnerException.Message | Should -Match 'systemd refuses'
            Test-Path -LiteralPath $units | Should -BeFalse
            $plain = [IO.Directory]::CreateDirectory("$TestDrive/plain-$([guid]::NewGuid())").FullName
            [IO.File]::Copy($tree.FakePwsh, "$plain/pwsh")
            $tree.FakePwsh = "$plain/pwsh"
        }
        $installer.Register((New-Entry $tree $tree.FakePwsh), $null) | Out-Null
        $service = Join-Path $units 'blockbackup.service'
        # verify resolves ExecStart's program as systemd unquotes it: any other path than the stand-in does not exist.
        $output = & systemd-analyze verify $service (Join-Path $units 'blockbackup.timer') 2>&1
        $LASTEXITCODE | Should -Be 0 -Because ($output | Out-String)
        ($output | Out-String) | Should -Not -Match 'not executable|Ignoring|escape'
        $run = Invoke-AsSystemd $service @{ DUMP_TO = Join-Path $TestDrive 'systemd-dump' }
        $run.Exec | Should -Be @($tree.FakePwsh, '-NoProfile', '-NonInteractive', '-Command', [BlockBackup.Engine.Scheduling.ScheduleEntry]::Script)
        Assert-IntendedScript $run.Exec[4]
        $run.Environment | Should -Be @("BLOCKBACKUP_MODULE=$($tree.Module)", "BLOCKBACKUP_CONFIG_DIR=$($tree.Config)")
        $run.ExitCode | Should -Be 0
        Read-Dump "$(Join-Path $TestDrive 'systemd-dump').argv" | Should -Be $run.Exec[1..4]
        Read-Dump "$(Join-Path $TestDrive 'systemd-dump').env" | Should -Be @($tree.Module, $tree.Config)
    }

    It 'Windows task (<Case>): the module path is one single-quoted PowerShell string, exactly' -ForEach $cases {
        $module = "C:\Program Files\$Text\BlockBackup\BlockBackup.psd1"
        $entry = [BlockBackup.Engine.Scheduling.ScheduleEntry]@{ PwshPath = 'C:\pwsh\pwsh.exe'; ModuleManifest = $module }
        $commands = Get-Commands $entry.WindowsScript
        $commands.Count | Should -Be 2
        $commands[0].GetCommandName() | Should -Be 'Import-Module'
        $commands[0].CommandElements.Count | Should -Be 3
        $commands[0].CommandElements[2].StringConstantType | Should -Be 'SingleQuoted'
        $commands[0].CommandElements[2].Value | Should -BeExactly $module
        $commands[1].Extent.Text | Should -Be 'Invoke-BackupPolicy -Due -ErrorAction Stop'
    }

    It 'the real pwsh imports the module from such a path and runs what is due, from cron and systemd alike, and nothing else' {
        $tree = New-WeirdTree ($cases | Where-Object Case -EQ 'injection').Text
        $before = @(Get-ChildItem -LiteralPath /tmp -Filter 'bbPWNED*')
        $entry = New-Entry $tree $Pwsh
        $command = ($entry.CronLine('root') -split ' ', 7)[6]
        & /bin/sh -c $command
        $LASTEXITCODE | Should -Be 0 -Because ([IO.File]::ReadAllText($tree.Log))
        $units = Join-Path $TestDrive "units-$([guid]::NewGuid())"
        [BlockBackup.Engine.Scheduling.ScheduleInstaller]::new('Systemd', $units).Register($entry, $null) | Out-Null
        $run = Invoke-AsSystemd (Join-Path $units 'blockbackup.service')
        $run.ExitCode | Should -Be 0 -Because $run.Error
        @(Get-ChildItem -LiteralPath /tmp -Filter 'bbPWNED*').Count | Should -Be $before.Count
        [IO.Directory]::Exists($tree.Config) | Should -BeFalse   # nothing was due, nothing written: the (empty) configuration directory was the one given
    }

    It 'refuses a path with a line break or another control character, or a relative path (InvalidSchedulePath)' -ForEach @(
        @{ Module = "/opt/a`nb/BlockBackup.psd1" }, @{ Module = "/opt/a`tb/BlockBackup.psd1" }, @{ Module = "/opt/a$([char]0x85)b/BlockBackup.psd1" }, @{ Module = 'opt/BlockBackup.psd1' }) {
        $entry = [BlockBackup.Engine.Scheduling.ScheduleEntry]@{ PwshPath = '/usr/bin/pwsh'; ModuleManifest = $Module }
        $thrown = { $entry.Validate() } | Should -Throw -PassThru
        $thrown.Exception.InnerException.ErrorId | Should -Be 'InvalidSchedulePath'
        $thrown.Exception.InnerException.Message | Should -Not -Match "`n"
    }
}
