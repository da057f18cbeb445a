#Requires -Version 7.4
#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
}

AfterAll {
    Remove-Module BlockBackup -ErrorAction SilentlyContinue
}

Describe 'New-VolumeBackup' {
    BeforeEach {
        $script:repo = Join-Path $TestDrive ([guid]::NewGuid())
        $script:vol = Join-Path $TestDrive "vol-$([guid]::NewGuid()).img"
        New-TestVolume -Path $vol -MiB 4 -Seed 3
    }

    It 'takes volumes from the pipeline (FileInfo by property name)' {
        $backup = Get-Item -LiteralPath $vol | New-VolumeBackup -Repository $repo -Name piped
        $backup | Should -BeOfType ([BlockBackup.Engine.BackupInfo])
        $backup.Source | Should -Be (Resolve-Path -LiteralPath $vol).ProviderPath
        $backup.VolumeSize | Should -Be 4MB
    }

    It 'creates nothing under -WhatIf' {
        New-VolumeBackup -Path $vol -Repository $repo -WhatIf
        Test-Path $repo | Should -BeFalse
    }

    It 'refuses an incremental without a parent, with error id NoParentBackup' {
        { New-VolumeBackup -Path $vol -Repository $repo -Incremental -ErrorAction Stop } |
            Should -Throw -ErrorId 'NoParentBackup,BlockBackup.Commands.NewVolumeBackupCommand'
    }

    It 'reports a missing volume as ObjectNotFound (VolumeNotFound)' {
        $err = $null
        New-VolumeBackup -Path (Join-Path $TestDrive 'missing.img') -Repository $repo -ErrorAction SilentlyContinue -ErrorVariable err
        $err[0].FullyQualifiedErrorId | Should -BeLike 'VolumeNotFound,*'
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It 'continues with the next piped volume after one fails (non-terminating errors)' {
        $backups = @((Join-Path $TestDrive 'nope.img'), $vol) | New-VolumeBackup -Repository $repo -ErrorAction SilentlyContinue -ErrorVariable err
        @($backups).Count | Should -Be 1
        @($err).Count | Should -Be 1
    }

    It 'refuses a volume open for writing by another process unless -Force' -Skip:(-not $IsLinux) {
        # exec: the shell becomes sleep, so the process holding the file is the one we stop.
        # One argument string: on Unix, Start-Process joins an argument list unquoted.
        $writer = Start-Process -FilePath sh -ArgumentList "-c `"exec 3>>'$vol'; exec sleep 60`"" -PassThru
        try {
            Start-Sleep -Milliseconds 500
            { New-VolumeBackup -Path $vol -Repository $repo -NoSnapshot -ErrorAction Stop } | Should -Throw -ErrorId 'VolumeInUse*'
            $backup = New-VolumeBackup -Path $vol -Repository $repo -NoSnapshot -Force -WarningVariable warnings -WarningAction SilentlyContinue
            $backup.Consistency | Should -Be 'direct-forced'
            "$warnings" | Should -Match 'crash-consistent'
        }
        finally {
            Stop-Process -Id $writer.Id -ErrorAction SilentlyContinue
        }
    }

    It 'names the parent and the snapshot method in -Verbose' {
        $full = New-VolumeBackup -Path $vol -Repository $repo -Name base
        $verbose = New-VolumeBackup -Path $vol -Repository $repo -Incremental -Verbose 4>&1 | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }
        ($verbose.Message -join "`n") | Should -Match "incremental of $($full.Id) \(base,"
        ($verbose.Message -join "`n") | Should -Match 'Point-in-time view: '
    }

    It 'refuses a compression level the codec does not have (<Compression> <Level>)' -ForEach @(
        @{ Compression = 'zlib'; Level = 4 }, @{ Compression = 'zlib'; Level = 0 }, @{ Compression = 'bz2'; Level = 12 },
        @{ Compression = 'zstd'; Level = 19 + 1 }, @{ Compression = 'none'; Level = 1 }) {
        { New-VolumeBackup -Path $vol -Repository $repo -Compression $Compression -CompressionLevel $Level -ErrorAction Stop } |
            Should -Throw -ErrorId 'CompressionLevelOutOfRange*'
        Test-Path -LiteralPath $repo | Should -BeFalse
    }

    It 'accepts each codec''s own levels' {
        (New-VolumeBackup -Path $vol -Repository $repo -Compression zlib -CompressionLevel 9).Compression | Should -Be 'zlib'
        (New-VolumeBackup -Path $vol -Repository $repo -Compression zstd -CompressionLevel -3).Compression | Should -Be 'zstd'
    }

    It 'creates no repository directory when the backup is refused' {
        { New-VolumeBackup -Path $vol -Repository $repo -Incremental -ErrorAction Stop } | Should -Throw -ErrorId 'NoParentBackup*'
        Test-Path -LiteralPath $repo | Should -BeFalse
        { New-VolumeBackup -Path (Join-Path $TestDrive 'nothing.img') -Repository $repo -ErrorAction Stop } | Should -Throw -ErrorId 'VolumeNotFound*'
        Test-Path -LiteralPath $repo | Should -BeFalse
    }

    It 'says a directory is not a volume' {
        $dir = Join-Path $TestDrive "dir-$([guid]::NewGuid())"
        New-Item -ItemType Directory -Path $dir | Out-Null
        { New-VolumeBackup -Path $dir -Repository $repo -ErrorAction Stop } | Should -Throw -ExpectedMessage '*is a directory, not a volume*'
    }

    It 'shows a wait for the volume''s lock in progress and -Verbose, naming the holder' -Skip:(-not $IsLinux) {
        $full = New-VolumeBackup -Path $vol -Repository $repo
        $holder = Start-Process -FilePath sleep -ArgumentList 60 -PassThru
        try {
            $lock = Join-Path $repo ".blockbackup/locks/volume-$($full.VolumeId).lock"
            $started = (Get-Process -Id $holder.Id).StartTime.ToUniversalTime().ToString('O')
            @{ host = [Environment]::MachineName; pid = $holder.Id; process_start = $started; operation = 'backup'; acquired_at = [DateTime]::UtcNow.ToString('O'); token = 'x' } |
                ConvertTo-Json | Set-Content -LiteralPath $lock
            $ps = [powershell]::Create()
            try {
                $null = $ps.AddScript("Import-Module '$ModuleManifest'; `$ProgressPreference = 'Continue'; New-VolumeBackup -Path '$vol' -Repository '$repo' -LockTimeoutSeconds 3 -Verbose")
                $null = $ps.Invoke()
                ($ps.Streams.Verbose.Message -join "`n") | Should -Match "held by process $($holder.Id) on "
                ($ps.Streams.Progress.StatusDescription -join "`n") | Should -Match 'Waiting for a lock'
                $ps.Streams.Error[0].FullyQualifiedErrorId | Should -BeLike 'RepositoryLocked,*'
            }
            finally {
                $ps.Dispose()
            }
        }
        finally {
            Stop-Process -Id $holder.Id -ErrorAction SilentlyContinue
        }
    }

    It 'puts sizes and rate in the progress status line (what the Minimal view shows)' {
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddScript("Import-Module '$ModuleManifest'; `$ProgressPreference = 'Continue'; New-VolumeBackup -Path '$vol' -Repository '$repo' | Out-Null")
            $null = $ps.Invoke()
            $statuses = $ps.Streams.Progress | Where-Object RecordType -EQ 'Processing' | ForEach-Object StatusDescription
            ($statuses -join "`n") | Should -Match '(?m)^Reading: [\d.]+ \w*B of 4.00 MiB'
            ($statuses -join "`n") | Should -Match '(?m)^\w+: [\d.]+ \w*B of 4.00 MiB, [\d.]+ \w*B/s$'
        }
        finally {
            $ps.Dispose()
        }
    }

    It 'writes progress, and none under SilentlyContinue' {
        foreach ($case in @(@{ Preference = 'Continue'; Any = $true }, @{ Preference = 'SilentlyContinue'; Any = $false })) {
            $ps = [powershell]::Create()
            try {
                $null = $ps.AddScript("Import-Module '$ModuleManifest'; `$ProgressPreference = '$($case.Preference)'; New-VolumeBackup -Path '$vol' -Repository '$repo' | Out-Null")
                $null = $ps.Invoke()
                $ps.HadErrors | Should -BeFalse
                ($ps.Streams.Progress.Count -gt 0) | Should -Be $case.Any
            }
            finally {
                $ps.Dispose()
            }
        }
    }

    It 'returns from a stop only once the stopped work has ended (what a stopped backup leaves is settled when Stop() returns)' {
        # A cmdlet on the module's own base, whose work takes a while to let go after the stop,
        # as a backup releasing its lock and in-flight record does. Before, the pipeline thread
        # reported the stop at its next progress record while that work still ran, so the
        # stopped backup's cleanup raced its lock (a CI failure on a busy machine).
        $engine = [BlockBackup.Commands.EngineCmdlet].Assembly
        Add-Type -ReferencedAssemblies $engine.Location, ([BlockBackup.Engine.OperationProgress].Assembly.Location), ([System.Management.Automation.PSCmdlet].Assembly.Location), 'System.Threading', 'System.Runtime' -IgnoreWarnings -TypeDefinition @'
using System.Management.Automation;
using System.Threading;
using BlockBackup.Engine;
namespace BlockBackupStopProbe
{
    [Cmdlet("Invoke", "StopProbe")]
    public sealed class InvokeStopProbe : BlockBackup.Commands.EngineCmdlet
    {
        public static readonly ManualResetEventSlim Working = new ManualResetEventSlim();
        public static volatile bool Ended;
        private static readonly ManualResetEventSlim Never = new ManualResetEventSlim();
        protected override void ProcessRecord() => ForItem(() => WriteObject(RunWithProgress<int>("Probe", (progress, token) =>
        {
            while (!token.IsCancellationRequested)
            {
                progress.Report(new OperationProgress(OperationPhase.Reading, 1, 2, "working"));
                Working.Set();
                Never.Wait(5);
            }
            progress.Report(new OperationProgress(OperationPhase.Reading, 1, 2, "letting go"));
            Never.Wait(1500);
            Ended = true;
            return 0;
        })));
    }
}
'@
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddScript("Import-Module -Assembly ([BlockBackupStopProbe.InvokeStopProbe].Assembly); Invoke-StopProbe")
            $async = $ps.BeginInvoke()
            [BlockBackupStopProbe.InvokeStopProbe]::Working.Wait([TimeSpan]::FromSeconds(60)) | Should -BeTrue
            $ps.Stop()
            [BlockBackupStopProbe.InvokeStopProbe]::Ended | Should -BeTrue -Because 'Stop() must not return while the stopped work still runs'
            $async.IsCompleted | Should -BeTrue
        }
        finally {
            $ps.Dispose()
        }
    }

    It 'is stopped by Stop-Job; the next backup of the volume takes the lock at once and leaves nothing incomplete' {
        $big = Join-Path $TestDrive 'job.img'
        $text = [System.Text.Encoding]::ASCII.GetBytes(('job backup ' * 100000))
        $stream = [System.IO.File]::Create($big)
        try { foreach ($i in 1..96) { $stream.Write($text, 0, $text.Length) } } finally { $stream.Dispose() }
        # A job is a fresh session: it imports the module by path.
        $job = Start-Job -ScriptBlock { param($m, $v, $r) Import-Module $m; New-VolumeBackup -Path $v -Repository $r -Compression bz2 -NoSnapshot } -ArgumentList $ModuleManifest, $big, $repo
        try {
            $deadline = [DateTime]::UtcNow.AddSeconds(60)
            while (-not (Get-ChildItem -LiteralPath $repo -Recurse -Force -Filter '*-0000*' -ErrorAction SilentlyContinue) -and $job.State -eq 'Running' -and [DateTime]::UtcNow -lt $deadline) {
                Start-Sleep -Milliseconds 50
            }
            $job.State | Should -Be 'Running' -Because 'the backup must still be writing when it is stopped'
            $clock = [System.Diagnostics.Stopwatch]::StartNew()
            $job | Stop-Job
            $clock.Elapsed.TotalSeconds | Should -BeLessThan 15
        }
        finally {
            $job | Remove-Job -Force
        }
        $output = New-VolumeBackup -Path $big -Repository $repo -Compression zlib -NoSnapshot -LockTimeoutSeconds 5 -Verbose 4>&1
        @($output | Where-Object { $_ -is [BlockBackup.Engine.BackupInfo] }).Count | Should -Be 1
        Get-VolumeBackup -Repository $repo -IncludeIncomplete | Where-Object Status -NE 'Available' | Should -BeNullOrEmpty
        Get-ChildItem -LiteralPath (Join-Path $repo '.blockbackup/locks') -Force | Should -BeNullOrEmpty
    }

    It 'stops promptly when the pipeline is stopped and leaves no backup behind' {
        $big = Join-Path $TestDrive 'big.img'
        $text = [System.Text.Encoding]::ASCII.GetBytes(('backup chain ' * 100000))
        $stream = [System.IO.File]::Create($big)
        try {
            foreach ($i in 1..96) { $stream.Write($text, 0, $text.Length) }   # ~125 MB of text: seconds of bz2
        }
        finally { $stream.Dispose() }
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddScript("Import-Module '$ModuleManifest'; New-VolumeBackup -Path '$big' -Repository '$repo' -Compression bz2 -NoSnapshot")
            $async = $ps.BeginInvoke()
            $deadline = [DateTime]::UtcNow.AddSeconds(30)
            # Until the backup stores (or is storing) its first objects.
            while (-not (Get-ChildItem -LiteralPath $repo -Recurse -Force -File -ErrorAction SilentlyContinue | Where-Object Name -Match '^(\.tmp-|volume_.*-\d{5})') -and [DateTime]::UtcNow -lt $deadline) {
                Start-Sleep -Milliseconds 20
            }
            $clock = [System.Diagnostics.Stopwatch]::StartNew()
            $ps.Stop()
            $clock.Elapsed.TotalSeconds | Should -BeLessThan 10
            $async.IsCompleted | Should -BeTrue
        }
        finally {
            $ps.Dispose()
        }
        # The repository directory was created by the stopped backup, which leaves nothing behind.
        Test-Path -LiteralPath $repo | Should -BeFalse
    }
}
