#Requires -Version 7.4
#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }
<#
    Backup policies end to end: the store and its cmdlets, a month of nightly `Invoke-BackupPolicy
    -Due` runs at chosen times (faketime around a child pwsh), the run lock, failures and exit
    codes, status for monitoring, and the DSC resource's class methods called directly (the DSC v3
    command resource: DscResource.Tests.ps1).
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    . (Join-Path $PSScriptRoot 'ConfigurationTrustHelpers.ps1')
    $script:config = Join-Path $TestDrive 'config'
    $env:BLOCKBACKUP_CONFIG_DIR = $config

    # Runs PowerShell in a child pwsh whose clock reads $At (libfaketime), with this module imported.
    # -TimeZone: the child's TZ (its local time; faketime's $At is read in it too).
    function script:Invoke-At {
        param([datetime] $At, [string] $Script, [string] $TimeZone)
        $file = Join-Path $TestDrive "at-$([guid]::NewGuid()).ps1"
        Set-Content -LiteralPath $file -Value "`$ProgressPreference = 'SilentlyContinue'; Import-Module '$ModuleManifest'; $Script"
        $savedZone = $env:TZ
        if ($TimeZone) { $env:TZ = $TimeZone }
        try {
            $output = & faketime ($At.ToString('yyyy-MM-dd HH:mm:ss')) $Pwsh -NoProfile -NonInteractive -File $file 2>&1
        }
        finally {
            $env:TZ = $savedZone
        }
        [pscustomobject]@{ ExitCode = $LASTEXITCODE; Output = ($output | Out-String) }
    }
}

AfterAll {
    Remove-Item Env:BLOCKBACKUP_CONFIG_DIR -ErrorAction SilentlyContinue
    Remove-Module BlockBackup -ErrorAction SilentlyContinue
}

Describe 'New-, Get-, Set-, Remove-BackupPolicy' {
    It 'creates, reads, changes and removes a policy in the store, as plain JSON' {
        $volume = Join-Path $TestDrive 'crud.img'
        New-TestVolume -Path $volume -MiB 1
        $policy = New-BackupPolicy -Name crud -Path $volume -Repository (Join-Path $TestDrive 'crud-repo') -Schedule '0 3 * * *' -KeepDaily 7 -FullEvery 7.00:00:00
        $policy.Name | Should -Be 'crud'
        $json = Get-Content -Raw -LiteralPath (Join-Path $config 'policies/crud.json') | ConvertFrom-Json
        $json.schedule | Should -Be '0 3 * * *'
        $json.fullEvery | Should -Be '7.00:00:00'
        (Get-BackupPolicy -Name cr*).KeepDaily | Should -Be 7
        Set-BackupPolicy -Name crud -KeepDaily 14 -Verify
        (Get-BackupPolicy -Name crud) | Should -Not -BeNullOrEmpty
        (Get-BackupPolicy -Name crud).KeepDaily | Should -Be 14
        (Get-BackupPolicy -Name crud).Verify | Should -BeTrue
        (Get-BackupPolicy -Name crud).FullEvery | Should -Be ([timespan]'7.00:00:00')
        { New-BackupPolicy -Name crud -Path $volume -Repository $TestDrive -Schedule '0 3 * * *' -KeepLast 1 -ErrorAction Stop } | Should -Throw -ErrorId 'BackupPolicyExists*'
        Remove-BackupPolicy -Name crud -Confirm:$false
        Get-BackupPolicy -Name crud -ErrorAction SilentlyContinue -ErrorVariable err | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'BackupPolicyNotFound,*'
    }

    It 'refuses bad input naming the policy and the field, and creates nothing (<Case>)' -ForEach @(
        @{ Case = 'invalid cron'; Arguments = @{ Schedule = 'nightly'; KeepLast = 3 }; Field = 'Schedule' }
        @{ Case = 'keeps nothing'; Arguments = @{ Schedule = '0 2 * * *' }; Field = 'Keep' }
        @{ Case = 'unknown zone'; Arguments = @{ Schedule = '0 2 * * *'; KeepLast = 1; TimeZone = 'Mars/Olympus' }; Field = 'TimeZone' }) {
        { New-BackupPolicy -Name bad -Path (Join-Path $TestDrive 'x.img') -Repository $TestDrive @Arguments -ErrorAction Stop } |
            Should -Throw -ExpectedMessage "*Backup policy 'bad', $Field*"
        Test-Path -LiteralPath (Join-Path $config 'policies/bad.json') | Should -BeFalse
    }

    It 'reports a policy file edited by hand into invalid JSON, and still lists the others' {
        New-BackupPolicy -Name good -Path (Join-Path $TestDrive 'g.img') -Repository $TestDrive -Schedule '0 2 * * *' -KeepLast 1 | Out-Null
        Set-Content -LiteralPath (Join-Path $config 'policies/broken.json') -Value '{ "name": "broken", "schedule": '
        $found = Get-BackupPolicy -ErrorAction SilentlyContinue -ErrorVariable err
        $found.Name | Should -Be 'good'
        $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidBackupPolicy,*'
        $err[0].Exception.Message | Should -Match "policy 'broken'.*not valid JSON"
        Remove-BackupPolicy -Name broken -Confirm:$false -WarningAction SilentlyContinue
        Remove-BackupPolicy -Name good -Confirm:$false
    }
}

Describe 'Names that are not policy names, for every verb' {
    BeforeAll {
        # A configuration directory with one real policy, and files beside and above it that a
        # name with '..', a separator or a root could reach: policies/../x.json, ../../app/settings.json
        # and, through state/, the real policy's own file (state/../policies/keep.json).
        $script:tree = Join-Path $TestDrive 'traversal'
        $script:travConfig = Join-Path $tree 'cfg'
        $app = Join-Path $tree 'app'
        New-Item -ItemType Directory -Force -Path $app | Out-Null
        $env:BLOCKBACKUP_CONFIG_DIR = $travConfig
        New-BackupPolicy -Name keep -Path (Join-Path $TestDrive 'keep.img') -Repository (Join-Path $TestDrive 'keep-repo') -Schedule '0 2 * * *' -KeepLast 1 | Out-Null
        $policyText = { param($name) (@{ name = $name; path = @('/etc/shadow'); repository = (Join-Path $app 'stolen'); schedule = '* * * * *'; keepLast = 1 } | ConvertTo-Json) }
        Set-Content -LiteralPath (Join-Path $app 'settings.json') -Value (& $policyText '../../app/settings')
        Set-Content -LiteralPath (Join-Path $app 'settings.lock') -Value 'not a lock'
        Set-Content -LiteralPath (Join-Path $travConfig 'x.json') -Value (& $policyText '../x')
        Set-Content -LiteralPath (Join-Path $travConfig 'x.lock') -Value 'not a lock'
        Set-Content -LiteralPath (Join-Path $app 'abs.json') -Value (& $policyText (Join-Path $app 'abs'))

        function script:Get-TravTree {
            Get-ChildItem -LiteralPath $tree -Recurse -Force | ForEach-Object { "$($_.FullName) $(if (-not $_.PSIsContainer) { (Get-FileHash -LiteralPath $_.FullName).Hash })" }
        }
        $script:before = Get-TravTree
        $dsc = (Get-Module BlockBackup).NestedModules | Where-Object Name -EQ 'BlockBackup.Dsc'
        function script:New-TravResource {
            param([string] $Name, [string] $Ensure)
            & $dsc { param($n, $e, $v) $r = [BlockBackupPolicy]::new(); $r.Name = $n; $r.Ensure = $e; $r.Path = @($v); $r.Schedule = '0 2 * * *'; $r.KeepLast = 1; $r.Repository = $v; $r } $Name $Ensure (Join-Path $TestDrive 'dsc-trav')
        }
    }

    AfterAll {
        $env:BLOCKBACKUP_CONFIG_DIR = $config
    }

    # Each verb, each name: InvalidBackupPolicy (nothing read, written or removed), and every file stays byte-identical.
    It '<Verb> refuses the name <Name> (InvalidBackupPolicy) and touches no file' -ForEach @(
        foreach ($name in '../../app/settings', '../x', '../policies/keep', '..\..\app\settings', '/absolute/app/abs', 'CON', 'nul.json', 'com1', '.hidden', 'a:b', 'a b', 'x/..') {
            foreach ($verb in 'New', 'Get', 'Set', 'Remove', 'Remove (pipeline)', 'Invoke', 'Get-Status', 'DSC Get', 'DSC Set Absent', 'DSC Set Present') {
                @{ Verb = $verb; Name = $name }
            }
        }) {
        if ($Name -eq '/absolute/app/abs') { $Name = Join-Path $tree 'app/abs' }   # a rooted name: Path.Combine would return it as it is
        $failed = $null
        $thrown = $null
        try {
            switch ($Verb) {
                'New' { New-BackupPolicy -Name $Name -Path (Join-Path $TestDrive 'n.img') -Repository (Join-Path $TestDrive 'n-repo') -Schedule '0 2 * * *' -KeepLast 1 -ErrorAction SilentlyContinue -ErrorVariable failed }
                'Get' { Get-BackupPolicy -Name $Name -ErrorAction SilentlyContinue -ErrorVariable failed }
                'Set' { Set-BackupPolicy -Name $Name -KeepLast 2 -ErrorAction SilentlyContinue -ErrorVariable failed }
                'Remove' { Remove-BackupPolicy -Name $Name -Confirm:$false -ErrorAction SilentlyContinue -ErrorVariable failed -WarningAction SilentlyContinue }
                'Remove (pipeline)' { [pscustomobject]@{ Name = $Name } | Remove-BackupPolicy -Confirm:$false -ErrorAction SilentlyContinue -ErrorVariable failed -WarningAction SilentlyContinue }
                'Invoke' { Invoke-BackupPolicy -Name $Name -Confirm:$false -ErrorAction SilentlyContinue -ErrorVariable failed }
                'Get-Status' { Get-BackupPolicyStatus -Name $Name -ErrorAction SilentlyContinue -ErrorVariable failed }
                'DSC Get' { (New-TravResource $Name Present).Get() }
                'DSC Set Absent' { (New-TravResource $Name Absent).Set() }
                'DSC Set Present' { (New-TravResource $Name Present).Set() }
            }
        }
        catch {
            $thrown = $_
        }
        $errorRecord = if ($Verb -like 'DSC*') { $thrown } else { $failed | Select-Object -First 1 }
        $errorRecord | Should -Not -BeNullOrEmpty -Because 'the name must be refused'
        $text = "$($errorRecord.FullyQualifiedErrorId) $($errorRecord.Exception.Message) $($errorRecord.Exception.InnerException.Message)"
        $text | Should -Match 'InvalidBackupPolicy|is not a policy name'
        $text | Should -Match 'is not a policy name'
        Get-TravTree | Should -Be $before
    }

    It 'still lists, runs and removes the real policy (the store is intact)' {
        (Get-BackupPolicy -Name keep).Name | Should -Be 'keep'
        @(Get-BackupPolicy).Name | Should -Be @('keep')
    }
}

# ssh-style trust, with the hostile user played by nobody (runuser): the tests run as root, as CI does.
Describe 'A policy another user can change is never run' -Skip:(-not $IsLinux -or (& id -u) -ne '0' -or -not (Get-Command runuser -ErrorAction SilentlyContinue)) {
    BeforeAll {
        # Stands for /etc/shadow: only root may read it.
        $script:shadow = Join-Path $TestDrive 'shadow.img'
        New-TestVolume -Path $shadow -MiB 1 -Seed 66
        chmod 0600 $shadow
        $script:loot = Join-Path $TestDrive 'loot'   # where nobody wants root's backup of it
        # The policy nobody writes: due every minute since long ago, backing up the secret into the loot.
        $script:evilPolicy = { param($name) (@{ name = $name; path = @($shadow); repository = $loot; schedule = '* * * * *'; keepLast = 1; createdUtc = '2020-01-01T00:00:00.0000000+00:00' } | ConvertTo-Json -Compress) }

        function script:Use-TrustConfig {
            $parent = New-Item -ItemType Directory -Path (Join-Path $TestDrive "trust-$([guid]::NewGuid())")
            $dir = Join-Path $parent 'cfg'
            $env:BLOCKBACKUP_CONFIG_DIR = $dir
            New-BackupPolicy -Name victim -Path (Join-Path $TestDrive 'v.img') -Repository (Join-Path $TestDrive 'v-repo') -Schedule '0 2 * * *' -KeepLast 1 | Out-Null
            $dir
        }
    }

    AfterEach {
        Test-Path -LiteralPath $loot | Should -BeFalse -Because 'nothing may be backed up into the planted repository'
    }

    AfterAll {
        $env:BLOCKBACKUP_CONFIG_DIR = $config
    }

    It 'writes policies 0600 in 0700 folders, and uses them' {
        $dir = Use-TrustConfig
        [IO.File]::GetUnixFileMode($dir) | Should -Be ([System.IO.UnixFileMode]'UserRead, UserWrite, UserExecute')
        [IO.File]::GetUnixFileMode((Join-Path $dir 'policies')) | Should -Be ([System.IO.UnixFileMode]'UserRead, UserWrite, UserExecute')
        [IO.File]::GetUnixFileMode((Join-Path $dir 'policies/victim.json')) | Should -Be ([System.IO.UnixFileMode]'UserRead, UserWrite')
        (Get-BackupPolicy).Name | Should -Be 'victim'
        (Get-BackupPolicyStatus -Name victim).Health | Should -Be 'NeverRun'
    }

    It 'refuses a policy file others can write (0666) that nobody rewrote, for every verb that reads it' {
        $dir = Use-TrustConfig
        $file = Join-Path $dir 'policies/victim.json'
        chmod 0666 $file
        chmod 0711 $dir; chmod 0711 (Join-Path $dir 'policies')
        Invoke-AsNobody "printf '%s' '$(& $evilPolicy victim)' > '$file'"
        chmod 0700 $dir; chmod 0700 (Join-Path $dir 'policies')
        Invoke-BackupPolicy -Due -ErrorAction SilentlyContinue -ErrorVariable due | Should -BeNullOrEmpty
        Assert-NotTrusted $due[0] $file 'group and others can write it \(mode 0666\)' "chmod go-w '$file'"
        Invoke-BackupPolicy -Name victim -ErrorAction SilentlyContinue -ErrorVariable named | Should -BeNullOrEmpty
        Assert-NotTrusted $named[0] $file 'mode 0666' 'chmod go-w'
        Get-BackupPolicy -Name victim -ErrorAction SilentlyContinue -ErrorVariable got | Should -BeNullOrEmpty
        Assert-NotTrusted $got[0] $file 'mode 0666' 'chmod go-w'
        Get-BackupPolicyStatus -ErrorAction SilentlyContinue -ErrorVariable status | Should -BeNullOrEmpty
        Assert-NotTrusted $status[0] $file 'mode 0666' 'chmod go-w'
        # The scheduled entry's command fails (non-zero exit code), so the refusal is seen.
        & $Pwsh -NoProfile -NonInteractive -Command "Import-Module '$ModuleManifest'; Invoke-BackupPolicy -Due -ErrorAction Stop" 2>$null | Out-Null
        $LASTEXITCODE | Should -Not -Be 0
        # It can be removed: its folder is trusted.
        Remove-BackupPolicy -Name victim -Confirm:$false -WarningAction SilentlyContinue -WarningVariable warned
        $warned | Should -Match 'not trusted.*removed anyway'
        $file | Should -Not -Exist
    }

    It 'runs nothing from a configuration directory others can write (0777), where nobody planted a policy' {
        $dir = Use-TrustConfig
        chmod 0777 $dir
        Invoke-AsNobody "cd '$dir' && mv policies gone && mkdir policies && printf '%s' '$(& $evilPolicy evil)' > policies/evil.json"
        Invoke-BackupPolicy -Due -ErrorAction SilentlyContinue -ErrorVariable due | Should -BeNullOrEmpty
        Assert-NotTrusted $due[0] $dir 'group and others can write it \(mode 0777\)' "chmod go-w '$dir'"
        Get-BackupPolicy -ErrorAction SilentlyContinue -ErrorVariable got | Should -BeNullOrEmpty
        Assert-NotTrusted $got[0] $dir 'mode 0777' 'chmod go-w'
        { New-BackupPolicy -Name more -Path $shadow -Repository (Join-Path $TestDrive 'm') -Schedule '0 2 * * *' -KeepLast 1 -ErrorAction Stop } | Should -Throw -ErrorId 'ConfigurationNotTrusted*'
    }

    It 'refuses a policy folder nobody replaced by a symbolic link to theirs' {
        $dir = Use-TrustConfig
        $theirs = New-Item -ItemType Directory -Path (Join-Path $TestDrive "theirs-$([guid]::NewGuid())")
        chown nobody $theirs
        chmod 0777 $dir
        Invoke-AsNobody "printf '%s' '$(& $evilPolicy victim)' > '$theirs/victim.json' && cd '$dir' && mv policies gone && ln -s '$theirs' policies"
        chmod 0700 $dir
        Invoke-BackupPolicy -Due -ErrorAction SilentlyContinue -ErrorVariable due | Should -BeNullOrEmpty
        Assert-NotTrusted $due[0] (Join-Path $dir 'policies') 'symbolic link' 'replace it with the directory'
    }
}

Describe 'A month of nightly Invoke-BackupPolicy -Due runs' -Skip:(-not $IsLinux -or -not (Get-Command faketime -ErrorAction SilentlyContinue)) {
    BeforeAll {
        $script:volume = Join-Path $TestDrive 'month.img'
        $script:repo = Join-Path $TestDrive 'month-repo'
        New-TestVolume -Path $volume -MiB 4 -Seed 80
        $start = [datetime]'2026-11-01 01:00:00'
        $created = Invoke-At $start "New-BackupPolicy -Name month -Path '$volume' -Repository '$repo' -Schedule '0 2 * * *' -TimeZone UTC -FullEvery 7.00:00:00 -KeepDaily 10 -Verify | Out-Null"
        if ($created.ExitCode -ne 0) { throw $created.Output }
        $script:nights = foreach ($night in 1..30) {
            if ($night -gt 1) { Edit-TestVolume -Path $volume -Seed (80 + $night) }
            $run = Invoke-At $start.AddDays($night - 1).AddHours(1).AddMinutes(5) "Invoke-BackupPolicy -Due -ErrorAction Stop | ForEach-Object { '{0}|{1}|{2}' -f `$_.BackupId, `$_.Type, (@(`$_.Removed) -join ',') }"
            if ($run.ExitCode -ne 0) { throw "night ${night}: $($run.Output)" }
            $fields = ($run.Output.Trim() -split "`n")[-1].Trim() -split '\|'
            [pscustomobject]@{ Night = $night; Id = [guid]$fields[0]; Type = $fields[1]; Sha = Get-Sha $volume }
        }
        # A second run in the same night is not due.
        $script:again = Invoke-At $start.AddDays(29).AddHours(3) 'Invoke-BackupPolicy -Due -Verbose 4>&1 | Out-String'
    }

    It 'made a full backup on the cadence (night 1, then every 7 days) and incrementals between' {
        ($nights | Where-Object Type -EQ 'Full').Night | Should -Be @(1, 8, 15, 22, 29)
        @($nights | Where-Object Type -EQ 'Incremental').Count | Should -Be 25
        $again.Output | Should -Match "Policy 'month' is not due"
    }

    It 'kept exactly the last 10 nights and the backups they depend on (nights 15 to 30)' {
        (Get-VolumeBackup -Repository $repo).Id | Should -Be @($nights | Where-Object Night -GE 15 | ForEach-Object Id)
    }

    It 'restores every retained backup byte-identically' {
        foreach ($night in $nights | Where-Object Night -GE 15) {
            $target = Join-Path $TestDrive "month-$($night.Night).img"
            Restore-VolumeBackup -Repository $repo -BackupId $night.Id -TargetPath $target | Out-Null
            Get-Sha $target | Should -Be $night.Sha -Because "night $($night.Night)"
            Remove-Item -LiteralPath $target
        }
    }

    It 'reports the policy Healthy with its chain, and the JSON round-trips' {
        $status = Invoke-At ([datetime]'2026-11-30 03:00:00') 'Get-BackupPolicyStatus -Name month | ConvertTo-Json -Compress'
        $parsed = $status.Output | ConvertFrom-Json
        $parsed.Health | Should -Be 'Healthy'
        $parsed.ChainLength | Should -Be 2
        $parsed.LastBackupId | Should -Be $nights[-1].Id.ToString()
        $late = Invoke-At ([datetime]'2026-12-02 09:00:00') 'Get-BackupPolicyStatus -Name month | ConvertTo-Json -Compress'
        ($late.Output | ConvertFrom-Json).Health | Should -Be 'Late'
    }
}

Describe 'Policy times on a machine outside UTC' -Skip:(-not $IsLinux -or -not (Get-Command faketime -ErrorAction SilentlyContinue)) {
    # Run at 10:15 local time, hourly on the hour (UTC): right after the run the policy is not due,
    # it is Healthy, its last success is the run's own time, and the next run is on the next hour.
    It 'reads back the run it just made unshifted under TZ=<Zone>' -ForEach @(@{ Zone = 'UTC' }, @{ Zone = 'Asia/Tokyo' }, @{ Zone = 'America/New_York' }) {
        $dir = Join-Path $TestDrive "tz-$($Zone -replace '/', '-')"
        $volume = Join-Path $TestDrive 'tz.img'
        if (-not (Test-Path -LiteralPath $volume)) { New-TestVolume -Path $volume -MiB 1 -Seed 9 }
        $env:BLOCKBACKUP_CONFIG_DIR = $dir
        try {
            $result = Invoke-At ([datetime]'2026-12-08 10:15:00') -TimeZone $Zone @"
New-BackupPolicy -Name tz -Path '$volume' -Repository '$(Join-Path $dir 'repo')' -Schedule '0 * * * *' -TimeZone UTC -KeepLast 3 | Out-Null
`$run = Invoke-BackupPolicy -Name tz -ErrorAction Stop
`$due = Invoke-BackupPolicy -Due -Verbose 4>&1 | Out-String
`$status = Get-BackupPolicyStatus -Name tz
# One line per value (no JSON: ConvertFrom-Json would turn the times into local DateTimes itself).
'Started=' + `$run.StartedUtc.ToString('o'); 'LastSuccess=' + `$status.LastSuccessUtc.ToString('o'); 'LastRun=' + `$status.LastRunUtc.ToString('o')
'Next=' + `$status.NextDueUtc.ToString('o'); 'Health=' + `$status.Health; 'Age=' + `$status.LastSuccessAgeSeconds; 'Offset=' + [TimeZoneInfo]::Local.BaseUtcOffset.TotalHours
'Due=' + (`$due -replace '\s+', ' ')
"@
        }
        finally {
            $env:BLOCKBACKUP_CONFIG_DIR = $config
        }
        $result.ExitCode | Should -Be 0 -Because $result.Output
        $r = @{}
        foreach ($line in $result.Output -split "`n") { if ($line -match '^(\w+)=(.*)$') { $r[$Matches[1]] = $Matches[2].Trim() } }
        $r.Offset | Should -Be (@{ 'UTC' = '0'; 'Asia/Tokyo' = '9'; 'America/New_York' = '-5' }[$Zone]) -Because 'the child runs in that zone'
        $r.Started | Should -Match '\+00:00$'
        $r.LastSuccess | Should -Be $r.Started
        $r.LastRun | Should -Be $r.Started
        $r.Health | Should -Be 'Healthy'
        [double]$r.Age | Should -BeLessThan 600
        $r.Due | Should -Match "Policy 'tz' is not due"
        $started = [DateTimeOffset]::Parse($r.Started, [cultureinfo]::InvariantCulture)
        $next = [DateTimeOffset]::Parse($r.Next, [cultureinfo]::InvariantCulture)
        ($next - $started) | Should -BeGreaterThan ([timespan]::Zero)
        ($next - $started) | Should -BeLessOrEqual ([timespan]::FromHours(1))
        # On disk: UTC, ISO 8601 with its offset.
        $state = Get-Content -Raw -LiteralPath (Join-Path $dir 'state/tz.json')
        $state | Should -Match '"lastRun": "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}\+00:00"'
        $state | Should -Match '"started": "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}\+00:00"'
    }
}

Describe 'Invoke-BackupPolicy failures and the run lock' {
    BeforeAll {
        $script:okVolume = Join-Path $TestDrive 'ok.img'
        New-TestVolume -Path $okVolume -MiB 1
        $script:failRepo = Join-Path $TestDrive 'fail-repo'
        New-BackupPolicy -Name mixed -Path $okVolume, (Join-Path $TestDrive 'missing.img') -Repository $failRepo -Schedule '0 2 * * *' -KeepLast 3 | Out-Null
    }

    It 'backs up the other volumes when one fails, and the run fails (non-zero exit code)' {
        $records = Invoke-BackupPolicy -Name mixed -ErrorAction SilentlyContinue -ErrorVariable err
        ($records | Where-Object Volume -EQ $okVolume).Succeeded | Should -BeTrue
        ($records | Where-Object Volume -Like '*missing.img').ErrorId | Should -Be 'VolumeNotFound'
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VolumeNotFound,*'
        $err[0].Exception.Message | Should -Match "policy 'mixed', volume '.*missing.img'"
        & $Pwsh -NoProfile -NonInteractive -Command "Import-Module '$ModuleManifest'; Invoke-BackupPolicy -Name mixed | Out-Null" 2>$null
        $LASTEXITCODE | Should -Not -Be 0
        & $Pwsh -NoProfile -NonInteractive -Command "Import-Module '$ModuleManifest'; Invoke-BackupPolicy -Name mixed -ErrorAction Stop | Out-Null" 2>$null
        $LASTEXITCODE | Should -Not -Be 0
    }

    It 'skips a policy that is already running on this node, with a clear record' {
        $lock = [System.IO.File]::Open((Join-Path $config 'state/mixed.lock'), 'OpenOrCreate', 'ReadWrite', 'None')
        try {
            $before = @(Get-VolumeBackup -Repository $failRepo).Count
            $record = & $Pwsh -NoProfile -NonInteractive -Command "Import-Module '$ModuleManifest'; Invoke-BackupPolicy -Name mixed -WarningAction SilentlyContinue | ConvertTo-Json -Compress" | ConvertFrom-Json
            $record.Skipped | Should -BeTrue
            $record.Reason | Should -Match 'already running on this node'
            @(Get-VolumeBackup -Repository $failRepo).Count | Should -Be $before
        }
        finally {
            $lock.Dispose()
        }
    }

    It 'reports an unreachable repository, and removes nothing' {
        New-BackupPolicy -Name unreachable -Path $okVolume -Repository 'rbd:nopool' -CephConfig (Join-Path $TestDrive 'none.conf') -Schedule '0 2 * * *' -KeepLast 1 | Out-Null
        $record = Invoke-BackupPolicy -Name unreachable -ErrorAction SilentlyContinue -ErrorVariable err
        $record.Succeeded | Should -BeFalse
        $err[0].Exception.Message | Should -Match "policy 'unreachable'"
        $status = Get-BackupPolicyStatus -Name unreachable
        $status.Health | Should -Be 'Failing'
        $status.LastError | Should -Not -BeNullOrEmpty
        Remove-BackupPolicy -Name unreachable -Confirm:$false
    }
}

Describe 'The DSC resource BlockBackupPolicy' {
    BeforeAll {
        $script:dscVolume = Join-Path $TestDrive 'dsc.img'
        New-TestVolume -Path $dscVolume -MiB 1
        $script:units = Join-Path $TestDrive 'dsc-units'
        $script:dsc = (Get-Module BlockBackup).NestedModules | Where-Object Name -EQ 'BlockBackup.Dsc'
        function script:New-Resource {
            param([hashtable] $Properties)
            & $dsc { param($p) $r = [BlockBackupPolicy]::new(); foreach ($k in $p.Keys) { $r.$k = $p[$k] }; $r } $Properties
        }
        $kind = if (Test-Path /run/systemd/system) { 'Systemd' } else { 'Cron' }
        $script:declared = @{
            Name = 'dsc'; Ensure = 'Present'; Path = @($dscVolume); Repository = (Join-Path $TestDrive 'dsc-repo'); Schedule = '0 2 * * *'
            KeepDaily = 7; Verify = $true; ScheduleDestination = if ($kind -eq 'Systemd') { $units } else { Join-Path $units 'blockbackup' }
        }
    }

    It 'Test() is false with reasons, Set() creates the policy and the schedule entry, then Test() is true' {
        $resource = New-Resource $declared
        $resource.Test() | Should -BeFalse
        $resource.Get().Reasons.Code | Should -Contain 'BlockBackupPolicy:dsc:Ensure'
        $resource.Set()
        $resource.Test() | Should -BeTrue
        (Get-BackupPolicy -Name dsc).KeepDaily | Should -Be 7
        Get-ChildItem -LiteralPath $units | Should -Not -BeNullOrEmpty
        $state = $resource.Get()
        $state.Ensure | Should -Be 'Present'
        $state.KeepDaily | Should -Be 7
    }

    It 'notices a changed setting, names it, and Set() puts it back' {
        Set-BackupPolicy -Name dsc -KeepDaily 3
        $resource = New-Resource $declared
        $resource.Test() | Should -BeFalse
        $resource.Get().Reasons.Phrase | Should -Contain "KeepDaily should be '7' but is '3'."
        $resource.Set()
        (Get-BackupPolicy -Name dsc).KeepDaily | Should -Be 7
        $resource.Test() | Should -BeTrue
    }
}
