#Requires -Version 7.4
#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }
<#
    Instant access over NBD with real clients (libnbd's nbdinfo, nbdcopy, nbdsh and nbdfuse;
    qemu-img): a full+incremental chain served by a background server that outlives the caller,
    read as its restore writes it; a writable mount that never changes the backup; Dismount during
    client I/O and a killed server leaving nothing behind; one file read out of an ext4 volume.
#>

BeforeDiscovery {
    $script:noClients = @('nbdinfo', 'nbdcopy', 'qemu-img', 'nbdfuse', 'debugfs', 'mkfs.ext4') | Where-Object { -not (Get-Command $_ -ErrorAction Ignore) }
    if (Test-Path /usr/bin/python3) { & /usr/bin/python3 -c 'import nbd' 2>$null }
    if (-not (Test-Path /usr/bin/python3) -or $LASTEXITCODE -ne 0) { $script:noClients += 'nbdsh (python3-libnbd)' }
}

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $env:BLOCKBACKUP_WORK_DIR = Join-Path $TestDrive 'work'
    $env:BLOCKBACKUP_CONFIG_DIR = Join-Path $TestDrive 'config'
    $script:mounts = Join-Path $env:BLOCKBACKUP_WORK_DIR 'mounts'

    # nbdsh through the system python, which python3-libnbd is installed for.
    function script:Invoke-Nbdsh([string] $Uri, [string] $Code) {
        $output = & /usr/bin/python3 -m nbd -u $Uri -c $Code 2>&1
        [pscustomobject]@{ ExitCode = $LASTEXITCODE; Output = ($output | Out-String) }
    }

    function script:Get-Sha([string] $Path) { (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash }

    # Every file of the repository with its hash (bookkeeping aside): proof a mount left it alone.
    function script:Get-RepositorySnapshot([string] $Path) {
        Get-ChildItem -LiteralPath $Path -Recurse -File | Where-Object FullName -notmatch '/\.blockbackup/' |
            ForEach-Object { "$($_.FullName)=$((Get-FileHash -LiteralPath $_.FullName -Algorithm SHA256).Hash)" } | Sort-Object
    }

    $script:repo = Join-Path $TestDrive 'repo'
    $script:volume = Join-Path $TestDrive 'vol.img'
    New-TestVolume -Path $volume -MiB 12 -Seed 3
    $null = New-VolumeBackup -Source $volume -Repository $repo -NoSnapshot -ErrorAction Stop
    $stream = [System.IO.File]::OpenWrite($volume)
    $changed = [byte[]]::new(70000)
    [System.Array]::Fill($changed, [byte]0x5a)
    try { $stream.Position = 5MB + 4096; $stream.Write($changed, 0, $changed.Length) } finally { $stream.Dispose() }
    $script:incremental = New-VolumeBackup -Source $volume -Repository $repo -NoSnapshot -Incremental -ErrorAction Stop
    $script:restored = Join-Path $TestDrive 'restored.img'
    $null = Restore-VolumeBackup -Repository $repo -BackupId $incremental.Id -Target $restored -ErrorAction Stop
}

AfterAll {
    Get-VolumeBackupMount | Dismount-VolumeBackup -Confirm:$false -ErrorAction SilentlyContinue
}

Describe 'Mount-VolumeBackup' -Skip:($noClients.Count -gt 0) {
    It 'serves the chain from a background process that real clients read as its restore' {
        $mount = $incremental | Mount-VolumeBackup -ErrorAction Stop
        try {
            $mount.Uri | Should -BeLike 'nbd+unix:///*?socket=*'
            $mount.ReadOnly | Should -BeTrue
            $mount.Size | Should -Be 12MB
            $mount.ProcessId | Should -Not -Be $PID
            (Get-VolumeBackupMount).ExportName | Should -Contain $mount.ExportName

            $info = (nbdinfo --json $mount.Uri | ConvertFrom-Json).exports[0]
            $info.'export-size' | Should -Be 12MB
            $info.is_read_only | Should -BeTrue
            $info.block_size_minimum | Should -Be 512

            $copy = Join-Path $TestDrive 'copy.img'
            nbdcopy $mount.Uri $copy
            $LASTEXITCODE | Should -Be 0
            Get-Sha $copy | Should -Be (Get-Sha $restored)
            Get-Sha $copy | Should -Be (Get-Sha $volume)
            qemu-img compare -f raw -F raw $mount.Uri $restored | Should -Match 'identical'

            # 4 KiB reads at random offsets, all in flight at once, against the source volume.
            $rnd = [System.Random]::new(9)
            $offsets = 1..48 | ForEach-Object { [long]$rnd.Next(0, (12MB - 4096) / 512) * 512 }
            $code = "import hashlib`nfor o in [$($offsets -join ',')]:`n    print(hashlib.sha256(h.pread(4096, o)).hexdigest())"
            $read = Invoke-Nbdsh $mount.Uri $code
            $read.ExitCode | Should -Be 0 -Because $read.Output
            $bytes = [System.IO.File]::ReadAllBytes($volume)
            $sha = [System.Security.Cryptography.SHA256]::Create()
            $expected = $offsets | ForEach-Object { [System.Convert]::ToHexString($sha.ComputeHash($bytes, [int]$_, 4096)).ToLowerInvariant() }
            ($read.Output -split "`n" | Where-Object { $_ }) | Should -Be $expected
        }
        finally {
            $mount | Dismount-VolumeBackup -Confirm:$false
        }

        Get-Process -Id $mount.ProcessId -ErrorAction Ignore | Should -BeNullOrEmpty
        Test-Path -LiteralPath $mount.Socket | Should -BeFalse
        Get-VolumeBackupMount | Should -BeNullOrEmpty
    }

    It 'refuses to remove a mounted backup' {
        $mount = Mount-VolumeBackup -Repository $repo -BackupId $incremental.Id -ErrorAction Stop
        try {
            { Remove-VolumeBackup -Repository $repo -BackupId $incremental.Id -Confirm:$false -ErrorAction Stop } | Should -Throw -ExpectedMessage '*mount*'
        }
        finally {
            $mount | Dismount-VolumeBackup -Confirm:$false
        }
    }

    It 'listens on loopback TCP when asked, and warns for any other address' {
        $mount = Mount-VolumeBackup -Repository $repo -BackupId $incremental.Id -Listen 127.0.0.1 -Port 0 -ExportName tcp-export -WarningVariable loopbackWarnings -ErrorAction Stop
        try {
            $loopbackWarnings | Should -BeNullOrEmpty
            $mount.Uri | Should -Match '^nbd://127\.0\.0\.1:\d+/tcp-export$'
            (nbdinfo --json $mount.Uri | ConvertFrom-Json).exports[0].'export-size' | Should -Be 12MB
        }
        finally {
            $mount | Dismount-VolumeBackup -Confirm:$false
        }

        $open = Mount-VolumeBackup -Repository $repo -BackupId $incremental.Id -Listen 0.0.0.0 -Port 0 -ExportName open-export -WarningVariable openWarnings -WarningAction SilentlyContinue -ErrorAction Stop
        $open | Dismount-VolumeBackup -Confirm:$false
        $openWarnings | Should -Match 'no authentication'
    }

    It 'keeps writes in an overlay that reads back, leaves the backup unchanged and is discarded on dismount' {
        $before = Get-RepositorySnapshot $repo
        $mount = Mount-VolumeBackup -Repository $repo -BackupId $incremental.Id -Writable -ErrorAction Stop
        $mount.ReadOnly | Should -BeFalse
        Test-Path -LiteralPath $mount.OverlayPath | Should -BeTrue
        $write = Invoke-Nbdsh $mount.Uri "h.pwrite(b'\xab' * 5120, 3584); h.flush(); assert h.pread(5120, 3584) == b'\xab' * 5120; print(h.pread(512, 9216) == open('$volume', 'rb').read()[9216:9728])"
        $write.ExitCode | Should -Be 0 -Because $write.Output
        $write.Output.Trim() | Should -Be 'True'
        $mount | Dismount-VolumeBackup -Confirm:$false

        Test-Path -LiteralPath $mount.OverlayPath | Should -BeFalse
        Test-Path -LiteralPath "$($mount.OverlayPath).map" | Should -BeFalse
        Get-RepositorySnapshot $repo | Should -Be $before
        Test-VolumeBackup -Repository $repo -BackupId $incremental.Id -IncludeChain -Quiet | Should -BeTrue
    }

    It 'keeps the overlay with -KeepOverlay' {
        $overlay = Join-Path $TestDrive 'kept.overlay'
        $mount = Mount-VolumeBackup -Repository $repo -BackupId $incremental.Id -Writable -OverlayPath $overlay -ErrorAction Stop
        (Invoke-Nbdsh $mount.Uri "h.pwrite(b'\x01' * 4096, 0); h.flush()").ExitCode | Should -Be 0
        $mount | Dismount-VolumeBackup -KeepOverlay -Confirm:$false
        $kept = [System.IO.File]::ReadAllBytes($overlay)
        $kept[0..4095] | Where-Object { $_ -ne 1 } | Should -BeNullOrEmpty
        Test-Path -LiteralPath "$overlay.map" | Should -BeTrue
    }

    It 'stops during client I/O and leaves no process, socket, overlay or state' {
        $mount = Mount-VolumeBackup -Repository $repo -BackupId $incremental.Id -Writable -ErrorAction Stop
        # A client that has read, says so, and waits (connected) for its next read.
        $info = [System.Diagnostics.ProcessStartInfo]::new('/usr/bin/python3')
        foreach ($a in @('-m', 'nbd', '-u', $mount.Uri, '-c', "import sys`nh.pread(65536, 0)`nprint('connected', flush=True)`nsys.stdin.readline()`ntry:`n    h.pread(65536, 0)`n    print('read')`nexcept nbd.Error as e:`n    print('failed')")) { $info.ArgumentList.Add($a) }
        $info.RedirectStandardInput = $true
        $info.RedirectStandardOutput = $true
        $client = [System.Diagnostics.Process]::Start($info)
        $client.StandardOutput.ReadLine() | Should -Be 'connected'

        $mount | Dismount-VolumeBackup -Confirm:$false
        $client.StandardInput.WriteLine()
        $client.StandardOutput.ReadLine() | Should -Be 'failed'
        $client.WaitForExit()

        Get-Process -Id $mount.ProcessId -ErrorAction Ignore | Should -BeNullOrEmpty
        Test-Path -LiteralPath $mount.Socket | Should -BeFalse
        Test-Path -LiteralPath $mount.OverlayPath | Should -BeFalse
        Get-ChildItem -LiteralPath $mounts -Filter '*.json' | Should -BeNullOrEmpty
    }

    It 'serves in the foreground with -Wait and leaves nothing behind when stopped by SIGTERM' {
        $overlay = Join-Path $TestDrive 'foreground.overlay'
        $script = "Import-Module '$ModuleManifest'; Mount-VolumeBackup -Repository '$repo' -BackupId $($incremental.Id) -ExportName fg -Writable -OverlayPath '$overlay' -Wait"
        $child = Start-Process $Pwsh -ArgumentList @('-NoProfile', '-NonInteractive', '-Command', $script) -PassThru -RedirectStandardOutput (Join-Path $TestDrive 'fg.out')
        try {
            # Serving once its state is recorded (by the foreground process itself).
            while (-not (Get-VolumeBackupMount -ExportName fg)) {
                $child.HasExited | Should -BeFalse -Because (Get-Content -Raw (Join-Path $TestDrive 'fg.out'))
                Start-Sleep -Milliseconds 50
            }

            $mount = Get-VolumeBackupMount -ExportName fg
            $mount.ProcessId | Should -Be $child.Id
            (Invoke-Nbdsh $mount.Uri "h.pwrite(b'\x02' * 4096, 8192); h.flush()").ExitCode | Should -Be 0
        }
        finally {
            kill -TERM $child.Id
            $child.WaitForExit()
        }

        $child.ExitCode | Should -Be 143
        Test-Path -LiteralPath $mount.Socket | Should -BeFalse
        Test-Path -LiteralPath $overlay | Should -BeFalse
        Test-Path -LiteralPath (Join-Path $mounts 'fg.json') | Should -BeFalse
    }

    It 'cleans up after a killed server at the next Get-VolumeBackupMount' {
        $mount = Mount-VolumeBackup -Repository $repo -BackupId $incremental.Id -Writable -ErrorAction Stop
        Stop-Process -Id $mount.ProcessId -Force   # SIGKILL: the server cleans up nothing
        Wait-Process -Id $mount.ProcessId -ErrorAction Ignore
        Test-Path -LiteralPath $mount.Socket | Should -BeTrue

        Get-VolumeBackupMount | Should -BeNullOrEmpty
        Test-Path -LiteralPath $mount.Socket | Should -BeFalse
        Test-Path -LiteralPath $mount.OverlayPath | Should -BeFalse
        Get-ChildItem -LiteralPath $mounts -Filter '*.json' | Should -BeNullOrEmpty
        # The export name is free again.
        $again = Mount-VolumeBackup -Repository $repo -BackupId $incremental.Id -ErrorAction Stop
        $again | Dismount-VolumeBackup -Confirm:$false
    }

    It 'removes nothing but a mount''s own leftovers for a planted state file' {
        # A state file of a "dead" mount naming files that are not a mount's: they must survive.
        $victims = foreach ($n in 'socket', 'overlay', 'log') {
            $v = Join-Path $TestDrive "victim-$n.txt"; Set-Content -LiteralPath $v -Value "keep $n"; $v
        }
        Set-Content -LiteralPath (Join-Path $TestDrive 'victim-log.txt') -Value $null -NoNewline   # an empty log-like file elsewhere
        New-Item -ItemType Directory -Force -Path $mounts | Out-Null
        $planted = [ordered]@{
            ExportName = 'planted'; Uri = 'nbd+unix:///planted'; BackupId = [guid]::NewGuid(); Repository = $repo; Size = 4096; ReadOnly = $false
            ProcessId = 999999; Started = [DateTimeOffset]::UtcNow.AddDays(-1); Socket = $victims[0]; OverlayPath = $victims[1]; LogPath = $victims[2]
        }
        $planted | ConvertTo-Json | Set-Content -LiteralPath (Join-Path $mounts 'planted.json')
        Get-VolumeBackupMount | Where-Object ExportName -EQ 'planted' | Should -BeNullOrEmpty
        Test-Path -LiteralPath (Join-Path $mounts 'planted.json') | Should -BeFalse
        foreach ($v in $victims) { Test-Path -LiteralPath $v | Should -BeTrue -Because "$v is not a mount's own" }
    }

    It 'restores one file from an ext4 volume through nbdfuse and debugfs' {
        $tree = Join-Path $TestDrive 'tree'
        New-Item -ItemType Directory -Path (Join-Path $tree 'etc/app') -Force | Out-Null
        $payload = [byte[]]::new(300000)
        [System.Random]::new(4).NextBytes($payload)
        [System.IO.File]::WriteAllBytes((Join-Path $tree 'etc/app/data.bin'), $payload)
        $image = Join-Path $TestDrive 'ext4.img'
        mkfs.ext4 -q -F -d $tree $image 16M
        $LASTEXITCODE | Should -Be 0
        $backup = New-VolumeBackup -Source $image -Repository (Join-Path $TestDrive 'fsrepo') -NoSnapshot -ErrorAction Stop
        $mount = $backup | Mount-VolumeBackup -ErrorAction Stop
        $fuse = Join-Path $TestDrive 'fuse'
        New-Item -ItemType Directory -Path $fuse | Out-Null
        $pidFile = Join-Path $TestDrive 'nbdfuse.pid'
        $nbdfuse = Start-Process nbdfuse -ArgumentList @('-r', '-P', $pidFile, $fuse, $mount.Uri) -PassThru
        try {
            # nbdfuse writes its pid file once the file is served.
            while (-not (Test-Path -LiteralPath $pidFile)) {
                $nbdfuse.HasExited | Should -BeFalse -Because 'nbdfuse must stay up serving'
                Start-Sleep -Milliseconds 50
            }

            $out = Join-Path $TestDrive 'data.out'
            debugfs -R "dump /etc/app/data.bin $out" (Join-Path $fuse 'nbd') 2>&1 | Out-Null
            Get-Sha $out | Should -Be (Get-Sha (Join-Path $tree 'etc/app/data.bin'))
        }
        finally {
            umount $fuse
            $nbdfuse.WaitForExit()
            $mount | Dismount-VolumeBackup -Confirm:$false
        }
    }
}
