#Requires -Version 7.4
#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }
<#
    Stopping a running cmdlet from outside, as users and schedulers do: SIGTERM (systemd stopping
    the unit, kill) and SIGINT (Ctrl+C) sent to a real pwsh running the module. A stopped backup
    leaves nothing incomplete; a restore stopped while writing an existing target in place says
    that the target is PARTIAL.
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')

    # ~125 MB of text: seconds of bz2, time enough to be stopped mid-way on any machine.
    function script:New-SlowVolume([string] $Path) {
        $text = [System.Text.Encoding]::ASCII.GetBytes(('signal me ' * 100000))
        $stream = [System.IO.File]::Create($Path)
        try { foreach ($i in 1..125) { $stream.Write($text, 0, $text.Length) } } finally { $stream.Dispose() }
    }

    # Starts $Script in a pwsh of its own (one process: $PSHOME's apphost), output to a file.
    function script:Start-Pwsh([string] $Script) {
        $file = Join-Path $TestDrive "signal-$([guid]::NewGuid()).ps1"
        Set-Content -LiteralPath $file -Value "`$ProgressPreference = 'SilentlyContinue'; Import-Module '$ModuleManifest'; $Script"
        $log = "$file.log"
        $process = Start-Process -FilePath $Pwsh -ArgumentList '-NoProfile', '-NonInteractive', '-File', $file -RedirectStandardOutput $log -RedirectStandardError "$log.err" -PassThru
        [pscustomobject]@{ Process = $process; Log = $log }
    }

    function script:Wait-Until([scriptblock] $Condition, [string] $What, [System.Diagnostics.Process] $Process) {
        $deadline = [DateTime]::UtcNow.AddSeconds(120)
        while (-not (& $Condition)) {
            if ($Process.HasExited) { throw "the pwsh exited (code $($Process.ExitCode)) before $What" }
            if ([DateTime]::UtcNow -gt $deadline) { throw "timed out waiting for $What" }
            Start-Sleep -Milliseconds 20
        }
    }

    function script:Send-Signal([System.Diagnostics.Process] $Process, [string] $Signal) {
        & kill "-$Signal" $Process.Id
        if (-not $Process.WaitForExit(120000)) { $Process.Kill(); throw "the pwsh did not end within 120 s of SIG$Signal" }
    }
}

AfterAll {
    Remove-Module BlockBackup -ErrorAction SilentlyContinue
}

Describe 'SIGTERM and SIGINT' -Skip:($IsWindows) {
    It 'SIGTERM stops a backup as Ctrl+C does: nothing incomplete, no lock, the script goes no further (exit 143)' {
        $volume = Join-Path $TestDrive 'term.img'
        New-SlowVolume $volume
        $repo = Join-Path $TestDrive 'term-repo'
        New-VolumeBackup -Path $volume -Repository $repo -Compression none -NoSnapshot | Out-Null   # so the repository stays: what the stopped one leaves is visible
        $run = Start-Pwsh "New-VolumeBackup -Path '$volume' -Repository '$repo' -Compression bz2 -NoSnapshot | Out-Null; 'went on'"
        Wait-Until { @(Get-ChildItem -LiteralPath $repo -Recurse -Force -File | Where-Object Name -Match '^backup-.*\.json$').Count -gt 0 } 'the backup recorded itself in flight' $run.Process
        Send-Signal $run.Process TERM
        $run.Process.ExitCode | Should -Be 143 -Because ((Get-Content -Raw -LiteralPath $run.Log) + (Get-Content -Raw -LiteralPath "$($run.Log).err"))
        Get-Content -Raw -LiteralPath $run.Log | Should -Not -Match 'went on'
        @(Get-VolumeBackup -Repository $repo -IncludeIncomplete -WarningAction SilentlyContinue | Where-Object Status -NE 'Available') | Should -BeNullOrEmpty
        Get-ChildItem -LiteralPath (Join-Path $repo '.blockbackup/locks') -Force -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        Get-ChildItem -LiteralPath (Join-Path $repo '.blockbackup/inflight') -Force -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
    }

    It 'SIGTERM with nothing of the module running ends pwsh at once, as it always did' {
        $run = Start-Pwsh "Start-Sleep -Seconds 120; 'went on'"
        Wait-Until { (Get-Process -Id $run.Process.Id -ErrorAction SilentlyContinue) -and (Test-Path -LiteralPath $run.Log) } 'pwsh started' $run.Process
        Start-Sleep -Milliseconds 500
        Send-Signal $run.Process TERM
        $run.Process.ExitCode | Should -Not -Be 0
        Get-Content -Raw -LiteralPath $run.Log | Should -Not -Match 'went on'
    }

    It 'says the target is PARTIAL when <Signal> stops a restore in place (-Force)' -ForEach @(
        @{ Signal = 'TERM' }
        @{ Signal = 'INT' }
    ) {
        $volume = Join-Path $TestDrive "partial-$Signal.img"
        New-SlowVolume $volume
        $repo = Join-Path $TestDrive "partial-repo-$Signal"
        $backup = New-VolumeBackup -Path $volume -Repository $repo -Compression bz2 -NoSnapshot
        $target = Join-Path $TestDrive "existing-$Signal.img"
        [System.IO.File]::WriteAllBytes($target, [byte[]]::new(1MB))
        $before = (Get-Item -LiteralPath $target).LastWriteTimeUtc
        $run = Start-Pwsh "Restore-VolumeBackup -Repository '$repo' -BackupId $($backup.Id) -TargetPath '$target' -Force | Out-Null; 'went on'"
        Wait-Until { (Get-Item -LiteralPath $target).LastWriteTimeUtc -ne $before -or (Get-Item -LiteralPath $target).Length -ne 1MB } 'the restore writing the target' $run.Process
        Send-Signal $run.Process $Signal
        $said = (Get-Content -Raw -LiteralPath $run.Log) + (Get-Content -Raw -LiteralPath "$($run.Log).err")
        $said | Should -Match "The restore of backup $($backup.Id) was stopped"
        $said | Should -Match ([regex]::Escape("The target '$target' was written in place and is now PARTIAL"))
        $said | Should -Not -Match 'went on'
    }
}
