#Requires -Version 7.4
<#
    Instant-access benchmark (issue 21): a full + incremental chain of a mixed volume (random,
    text, zeros, holes) in a directory repository; Restore-VolumeBackup against nbdcopy of the
    same backup served by Mount-VolumeBackup (to a file and to null:), the time to the first 4 KiB
    read, random 4 KiB reads per second (nbdsh, 32 in flight) and the server's peak RSS.
    Needs libnbd-bin, python3-libnbd. Run from the repository root after `dotnet build`:
        dotnet pwsh bench/nbd-bench.ps1 -GiB 2
#>
param([int] $GiB = 2, [string] $Directory = (Join-Path ([System.IO.Path]::GetTempPath()) 'bbk-nbd-bench'))
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
Import-Module (Join-Path $PSScriptRoot '../out/BlockBackup/BlockBackup.psd1')
Remove-Item -Recurse -Force $Directory -ErrorAction Ignore
New-Item -ItemType Directory $Directory | Out-Null
$env:BLOCKBACKUP_WORK_DIR = Join-Path $Directory 'work'
$repo = Join-Path $Directory 'repo'
$volume = Join-Path $Directory 'vol.img'
$size = [long]$GiB * 1GB

# 4 MiB regions: random, text, zeros, holes.
$rnd = [System.Random]::new(7)
$region = [byte[]]::new(4MB)
$text = [System.Text.Encoding]::ASCII.GetBytes(('{"level":"INFO","svc":"api","msg":"volume backup request ok"}' + "`n") * 70000)
$f = [System.IO.File]::Open($volume, 'Create', 'Write')
for ([long]$pos = 0; $pos -lt $size; $pos += 4MB) {
    switch ($rnd.Next(4)) {
        0 { $rnd.NextBytes($region); $f.Position = $pos; $f.Write($region, 0, $region.Length) }
        1 { $f.Position = $pos; $f.Write($text, 0, 4MB) }
        2 { [System.Array]::Clear($region); $f.Position = $pos; $f.Write($region, 0, $region.Length) }
    }
}
$f.SetLength($size); $f.Dispose()
$null = New-VolumeBackup -Source $volume -Repository $repo -NoSnapshot
$f = [System.IO.File]::OpenWrite($volume); $buf = [byte[]]::new(1MB)
for ($i = 0; $i -lt 64; $i++) { $rnd.NextBytes($buf); $f.Position = [long]$rnd.Next(0, $GiB * 1024 - 1) * 1MB; $f.Write($buf, 0, $buf.Length) }
$f.Dispose()
$incr = New-VolumeBackup -Source $volume -Repository $repo -NoSnapshot -Incremental

$t = [System.Diagnostics.Stopwatch]::StartNew()
$null = Restore-VolumeBackup -Repository $repo -BackupId $incr.Id -TargetPath (Join-Path $Directory 'restored.img')
$restore = $t.Elapsed.TotalSeconds
$t.Restart()
$m = Mount-VolumeBackup -Repository $repo -BackupId $incr.Id
$mount = $t.Elapsed.TotalSeconds
$t.Restart()
& /usr/bin/python3 -m nbd -u $m.Uri -c 'h.pread(4096, 0)'
$first = $t.Elapsed.TotalSeconds
$t.Restart()
nbdcopy $m.Uri (Join-Path $Directory 'copy.img')
$copy = $t.Elapsed.TotalSeconds
$t.Restart()
nbdcopy $m.Uri null:
$null_ = $t.Elapsed.TotalSeconds
$code = "import random, time`nr = random.Random(1)`noffs = [r.randrange(0, $size//4096)*4096 for _ in range(4000)]`nt = time.time()`nbufs = [nbd.Buffer(4096) for _ in range(32)]`ni = 0`nwhile i < len(offs):`n    cs = [h.aio_pread(bufs[k], offs[i+k]) for k in range(min(32, len(offs)-i))]`n    for c in cs:`n        while not h.aio_command_completed(c): h.poll(-1)`n    i += len(cs)`nprint(int(len(offs)/(time.time()-t)))"
$rps = & /usr/bin/python3 -m nbd -u $m.Uri -c $code
$rss = ((Get-Content "/proc/$($m.ProcessId)/status" | Select-String 'VmHWM').Line -split '\s+')[1]
$m | Dismount-VolumeBackup -Confirm:$false
$same = (Get-FileHash (Join-Path $Directory 'restored.img')).Hash -eq (Get-FileHash (Join-Path $Directory 'copy.img')).Hash
$mib = $size / 1MB
[pscustomobject]@{
    VolumeGiB = $GiB
    RestoreMiBps = [math]::Round($mib / $restore)
    NbdcopyFileMiBps = [math]::Round($mib / $copy)
    NbdcopyVsRestore = [math]::Round($restore / $copy, 2)
    NbdcopyNullMiBps = [math]::Round($mib / $null_)
    MountSeconds = [math]::Round($mount, 2)
    FirstReadSeconds = [math]::Round($first, 2)
    Random4KiBReadsPerSecond = [int]$rps
    ServerPeakRssMiB = [math]::Round([long]$rss / 1024)
    Identical = $same
}
Remove-Item -Recurse -Force $Directory -ErrorAction Ignore
