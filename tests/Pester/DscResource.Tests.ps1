#Requires -Version 7.4
#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }
<#
    The DSC v3 command resource BlockBackup/BackupPolicy as dsc runs it: the manifest's executable
    looked up as dsc looks it up (PATH, then the manifest's folder), run from the manifest's folder
    with the instance as JSON on stdin, on a PATH that has no pwsh (the README's set-up has
    PowerShell as a dotnet tool only). The built manifest and the one `./build.ps1 -Task Install`
    writes are validated against DSC's published manifest schema (vendored in Dsc/). Strict input:
    types as declared, no unknown properties, no `ensure`, errors that name the property, exit
    codes as the manifest declares them, and nothing written by an instance that is refused.
    (No `dsc` binary is packaged for Debian, NuGet or npm, so dsc itself is not run.)
#>

BeforeDiscovery {
    # python3-jsonschema (.ci/run installs it) validates the manifest.
    $hasJsonSchema = $false
    if (Get-Command python3 -CommandType Application -ErrorAction SilentlyContinue) {
        & python3 -c 'import jsonschema' 2>$null
        $hasJsonSchema = $LASTEXITCODE -eq 0
    }
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $script:config = Join-Path $TestDrive 'config'
    $env:BLOCKBACKUP_CONFIG_DIR = $config
    $script:moduleDir = Split-Path -Parent $ModuleManifest
    $script:volume = Join-Path $TestDrive 'dsc.img'
    New-TestVolume -Path $volume -MiB 1
    $script:repository = Join-Path $TestDrive 'dsc-repo'
    $script:scheduleFile = Join-Path $TestDrive 'sched/blockbackup'
    $script:kind = if (Test-Path /run/systemd/system) { 'Systemd' } else { 'Cron' }
    $script:scheduleDestination = if ($kind -eq 'Systemd') { Join-Path $TestDrive 'units' } else { $scheduleFile }

    # A PATH with no pwsh on it: the directories of this one without those holding a pwsh.
    $script:pathWithoutPwsh = (@($env:PATH -split [IO.Path]::PathSeparator | Where-Object {
                $_ -and -not (Test-Path -LiteralPath (Join-Path $_ ($IsWindows ? 'pwsh.exe' : 'pwsh')))
            }) -join [IO.Path]::PathSeparator)

    # One operation of a manifest, as dsc runs it (dsc-lib's canonicalize_which and invoke_command):
    # the executable from PATH if it is there, else from the manifest's folder; the manifest's
    # folder as the current directory; the instance on stdin.
    function script:Invoke-Manifest {
        param([string] $Manifest, [string] $Operation, [string] $Json)
        $folder = Split-Path -Parent $Manifest
        $spec = (Get-Content -Raw -LiteralPath $Manifest | ConvertFrom-Json -AsHashtable)[$Operation]
        $onPath = @($pathWithoutPwsh -split [IO.Path]::PathSeparator | Where-Object { $_ } |
                ForEach-Object { Join-Path $_ $spec.executable } | Where-Object { [IO.Path]::IsPathRooted($spec.executable) -eq $false -and (Test-Path -LiteralPath $_ -PathType Leaf) })
        $executable = if ([IO.Path]::IsPathRooted($spec.executable)) { $spec.executable }
        elseif ($onPath) { $onPath[0] }
        else { Join-Path $folder $spec.executable }
        Test-Path -LiteralPath $executable -PathType Leaf | Should -BeTrue -Because "dsc finds '$($spec.executable)' on PATH or in $folder"
        $start = [System.Diagnostics.ProcessStartInfo]::new($executable)
        foreach ($a in $spec.args) { $start.ArgumentList.Add($a) }
        $start.WorkingDirectory = $folder
        $start.RedirectStandardInput = $true; $start.RedirectStandardOutput = $true; $start.RedirectStandardError = $true
        $start.Environment['PATH'] = $pathWithoutPwsh
        $start.Environment['BLOCKBACKUP_CONFIG_DIR'] = $config
        $start.Environment.Remove('BLOCKBACKUP_PWSH') | Out-Null
        $process = [System.Diagnostics.Process]::Start($start)
        $process.StandardInput.Write($Json); $process.StandardInput.Close()
        $errTask = $process.StandardError.ReadToEndAsync()
        $out = $process.StandardOutput.ReadToEnd(); $process.WaitForExit()
        [pscustomobject]@{ ExitCode = $process.ExitCode; Output = $out; Error = $errTask.Result }
    }

    $script:built = Join-Path $moduleDir 'BlockBackup.dsc.resource.json'
    function script:Invoke-Built([string] $Operation, [hashtable] $Instance) {
        Invoke-Manifest $built $Operation ($Instance | ConvertTo-Json -Compress)
    }
    function script:New-Instance([hashtable] $More = @{}) {
        $instance = @{ name = 'dsc'; path = @($volume); repository = $repository; schedule = '0 2 * * *'; scheduleDestination = $scheduleDestination }
        foreach ($k in $More.Keys) { $instance[$k] = $More[$k] }
        $instance
    }
    function script:Remove-Policies {
        Get-BackupPolicy | Remove-BackupPolicy -Confirm:$false
        Remove-Item -LiteralPath $scheduleDestination -Recurse -Force -ErrorAction SilentlyContinue
    }

    # The module as `./build.ps1 -Task Install` installs it (into a private XDG_DATA_HOME).
    $script:installedManifest = $null
    if (-not $IsWindows) {
        $data = Join-Path $TestDrive 'xdg'
        $build = Join-Path (Split-Path -Parent (Split-Path -Parent $PSScriptRoot)) 'build.ps1'
        $env:XDG_DATA_HOME = $data
        try {
            & $Pwsh -NoProfile -NonInteractive -File $build -Task Install | Out-Null
            if ($LASTEXITCODE -ne 0) { throw "build.ps1 -Task Install failed ($LASTEXITCODE)" }
        }
        finally {
            Remove-Item Env:XDG_DATA_HOME
        }
        $installed = Get-ChildItem -LiteralPath (Join-Path $data 'powershell/Modules/BlockBackup') -Directory | Select-Object -First 1
        $script:installedManifest = Join-Path $installed.FullName 'BlockBackup.dsc.resource.json'
    }

    $script:python = Get-Command python3 -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
}

Describe 'The DSC v3 manifest' {
    It 'validates against DSC''s published resource manifest schema (built and installed)' -Skip:(-not $hasJsonSchema) {
        $schema = Join-Path $PSScriptRoot 'Dsc/resource-manifest.schema.json'
        $check = Join-Path $PSScriptRoot 'Dsc/validate-manifest.py'
        $result = & $python.Source $check $schema $built
        $LASTEXITCODE | Should -Be 0 -Because ($result -join "`n")
        if ($installedManifest) {
            $result = & $python.Source $check $schema $installedManifest
            $LASTEXITCODE | Should -Be 0 -Because ($result -join "`n")
        }
    }

    It 'references DSC''s canonical _exist and _inDesiredState and declares every exit code the resource uses' {
        $manifest = Get-Content -Raw -LiteralPath $built | ConvertFrom-Json -AsHashtable
        $manifest.schema.embedded.properties._exist.'$ref' | Should -Be 'https://aka.ms/dsc/schemas/v3/resource/properties/exist.json'
        $manifest.schema.embedded.properties._inDesiredState.'$ref' | Should -Be 'https://aka.ms/dsc/schemas/v3/resource/properties/inDesiredState.json'
        @($manifest.exitCodes.Keys | Sort-Object) | Should -Be @('0', '1', '2', '3')
        $manifest.whatIf.return | Should -Be 'state'
    }
}

Describe 'The built DSC v3 resource, run as dsc runs it with no pwsh on PATH' {
    AfterEach { Remove-Policies }

    It 'gets, tests, previews, sets and deletes a policy' {
        $instance = New-Instance @{ keepDaily = 7; verify = $true }
        $get = Invoke-Built get @{ name = 'dsc' }
        $get.ExitCode | Should -Be 0 -Because $get.Error
        ($get.Output | ConvertFrom-Json)._exist | Should -BeFalse
        $whatIf = Invoke-Built whatIf $instance
        $whatIf.ExitCode | Should -Be 0 -Because $whatIf.Error
        ($whatIf.Output | ConvertFrom-Json).keepDaily | Should -Be 7
        Get-BackupPolicy | Should -BeNullOrEmpty -Because 'whatIf writes nothing'
        Test-Path -LiteralPath $scheduleDestination | Should -BeFalse
        ((Invoke-Built test $instance).Output | ConvertFrom-Json)._inDesiredState | Should -BeFalse
        $set = Invoke-Built set $instance
        $set.ExitCode | Should -Be 0 -Because $set.Error
        ($set.Output | ConvertFrom-Json).keepDaily | Should -Be 7
        (Get-BackupPolicy -Name dsc).Verify | Should -BeTrue
        $test = Invoke-Built test $instance
        ($test.Output | ConvertFrom-Json)._inDesiredState | Should -BeTrue -Because $test.Output
        $delete = Invoke-Built delete @{ name = 'dsc' }
        $delete.ExitCode | Should -Be 0 -Because $delete.Error
        Get-BackupPolicy | Should -BeNullOrEmpty
    }

    It 'refuses <Case> with exit code 2, naming the property, and writes nothing' -ForEach @(
        @{ Case = 'a string for a boolean'; More = @{ verify = 'false' }; Property = 'verify' }
        @{ Case = 'a string for an integer'; More = @{ keepDaily = '7' }; Property = 'keepDaily' }
        @{ Case = 'a fraction for an integer'; More = @{ keepDaily = 1.5 }; Property = 'keepDaily' }
        @{ Case = 'a number for a string'; More = @{ schedule = 2 }; Property = 'schedule' }
        @{ Case = 'a string for a list'; More = @{ path = 'x' }; Property = 'path' }
        @{ Case = 'a number in a list of strings'; More = @{ path = @(1) }; Property = 'path' }
        @{ Case = 'a negative count'; More = @{ keepLast = -1 }; Property = 'keepLast' }
        @{ Case = 'a percentage over 100'; More = @{ verifyPercent = 101 }; Property = 'verifyPercent' }
        @{ Case = 'a compression outside the enum'; More = @{ compression = 'gzip' }; Property = 'compression' }
        @{ Case = 'an interval that does not divide an hour'; More = @{ scheduleEveryMinutes = 7 }; Property = 'scheduleEveryMinutes' }
        @{ Case = 'ensure (DSC v3 has _exist)'; More = @{ ensure = 'Absent' }; Property = 'ensure' }
        @{ Case = 'an unknown property'; More = @{ keepLst = 3 }; Property = 'keepLst' }
        @{ Case = 'an unknown _ property'; More = @{ _purge = $true }; Property = '_purge' }
        @{ Case = 'a property in the wrong case'; More = @{ Verify = $true }; Property = 'Verify' }
        @{ Case = 'a string for _exist'; More = @{ _exist = 'false' }; Property = '_exist' }
    ) {
        foreach ($operation in 'set', 'test', 'whatIf') {
            $result = Invoke-Built $operation (New-Instance $More)
            $result.ExitCode | Should -Be 2 -Because "$operation $($result.Error)"
            ($result.Error | ConvertFrom-Json).error | Should -Match "property '$Property'" -Because $result.Error
        }
        Get-BackupPolicy | Should -BeNullOrEmpty
        Test-Path -LiteralPath $scheduleDestination | Should -BeFalse
    }

    It 'refuses ensure on an existing policy: it stays' {
        $set = Invoke-Built set (New-Instance @{ keepLast = 1 })
        $set.ExitCode | Should -Be 0 -Because $set.Error
        $result = Invoke-Built set @{ name = 'dsc'; ensure = 'Absent' }
        $result.ExitCode | Should -Be 2
        $result.Error | Should -Match '_exist'
        Get-BackupPolicy -Name dsc | Should -Not -BeNullOrEmpty
    }

    It 'accepts DSC''s own _metadata and ignores it' {
        $result = Invoke-Built get @{ name = 'dsc'; _metadata = @{ 'Microsoft.DSC' = @{ securityContext = 'current' } } }
        $result.ExitCode | Should -Be 0 -Because $result.Error
    }

    It 'whatIf checks what set would refuse (a bad cron expression), naming the setting, and writes nothing' {
        $result = Invoke-Built whatIf (New-Instance @{ schedule = 'not cron' })
        $result.ExitCode | Should -Be 1
        $result.Error | Should -Match 'Schedule'
        Get-BackupPolicy | Should -BeNullOrEmpty
    }

    It 'manages 0 and false (no such rule, no limit, no verification); an absent property is not managed' {
        New-BackupPolicy -Name dsc -Path $volume -Repository $repository -Schedule '0 2 * * *' -KeepDaily 7 -KeepWeekly 4 -MaxChainLength 5 -VerifyPercent 10 -Verify | Out-Null
        $instance = New-Instance @{ keepDaily = 0; maxChainLength = 0; verifyPercent = 0; verify = $false }
        ((Invoke-Built test $instance).Output | ConvertFrom-Json)._inDesiredState | Should -BeFalse
        $set = Invoke-Built set $instance
        $set.ExitCode | Should -Be 0 -Because $set.Error
        $policy = Get-BackupPolicy -Name dsc
        $policy.KeepDaily | Should -Be 0
        $policy.MaxChainLength | Should -BeNullOrEmpty
        $policy.VerifyPercent | Should -BeNullOrEmpty
        $policy.Verify | Should -BeFalse
        $policy.KeepWeekly | Should -Be 4 -Because 'keepWeekly was not declared'
        $test = Invoke-Built test $instance
        ($test.Output | ConvertFrom-Json)._inDesiredState | Should -BeTrue -Because $test.Output
    }
}

Describe 'The class resource checks every value before it writes' {
    AfterEach { Remove-Policies }

    It 'Set() with ScheduleEveryMinutes 7 is refused, naming the property, and no policy is written' {
        $dsc = (Get-Module BlockBackup).NestedModules | Where-Object Name -EQ 'BlockBackup.Dsc'
        $resource = & $dsc {
            param($v, $r, $d)
            $p = [BlockBackupPolicy]::new(); $p.Name = 'dsc'; $p.Path = @($v); $p.Repository = $r; $p.Schedule = '0 2 * * *'
            $p.KeepLast = 1; $p.ScheduleEveryMinutes = 7; $p.ScheduleDestination = $d; $p
        } $volume $repository $scheduleDestination
        { $resource.Set() } | Should -Throw "*scheduleEveryMinutes*"
        Get-BackupPolicy | Should -BeNullOrEmpty
        Test-Path -LiteralPath $scheduleDestination | Should -BeFalse
    }
}

Describe 'The installed DSC v3 resource' -Skip:$IsWindows {
    It 'runs with the pwsh that installed it, from the installed folder, with no pwsh on PATH' {
        $manifest = $installedManifest
        (Get-Content -Raw -LiteralPath $manifest | ConvertFrom-Json).get.executable | Should -Be $Pwsh
        $get = Invoke-Manifest $manifest get '{"name":"installed"}'
        $get.ExitCode | Should -Be 0 -Because $get.Error
        ($get.Output | ConvertFrom-Json)._exist | Should -BeFalse
        $bad = Invoke-Manifest $manifest get '{"name":"installed","verify":"false"}'
        $bad.ExitCode | Should -Be 2
    }
}
