# Shared by the Pester files: dot-source it in BeforeAll. Imports the built module and defines the
# test-volume helpers in the calling file's script scope.
$repoRoot = Split-Path -Parent (Split-Path -Parent $PSScriptRoot)
$script:ModuleManifest = Join-Path $repoRoot 'out/BlockBackup/BlockBackup.psd1'
if (-not (Test-Path -LiteralPath $ModuleManifest)) {
    throw "The module is not built: run 'dotnet build' in $repoRoot first."
}

Import-Module $ModuleManifest -Force -ErrorAction Stop
$ProgressPreference = 'SilentlyContinue'

# The pwsh running these tests, for child processes: a dotnet-tool pwsh runs as `dotnet`, so neither
# (Get-Process -Id $PID).Path nor [Environment]::ProcessPath is pwsh; $PSHOME always holds it.
$script:Pwsh = Join-Path $PSHOME ($IsWindows ? 'pwsh.exe' : 'pwsh')

# A volume of 1 MiB regions cycling random, zero, text and hole (never written).
function script:New-TestVolume {
    param([string] $Path, [int] $MiB, [int] $Seed = 1)
    $Path = $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($Path)   # .NET resolves against the process directory
    $rnd = [System.Random]::new($Seed)
    $text = [System.Text.Encoding]::ASCII.GetBytes(('{"level":"INFO","svc":"api","msg":"volume backup ' * 40000))
    $buffer = [byte[]]::new(1MB)
    $stream = [System.IO.File]::Open($Path, 'Create', 'Write')
    try {
        for ($i = 0; $i -lt $MiB; $i++) {
            $kind = ($i + $Seed) % 4
            if ($kind -eq 3) {
                continue   # a hole: never written
            }
            switch ($kind) {
                0 { $rnd.NextBytes($buffer) }
                1 { [System.Array]::Clear($buffer) }
                2 { [System.Array]::Copy($text, $rnd.Next(0, 1000), $buffer, 0, 1MB) }
            }
            $stream.Position = [long]$i * 1MB
            $stream.Write($buffer, 0, $buffer.Length)
        }
        $stream.SetLength([long]$MiB * 1MB)
    }
    finally {
        $stream.Dispose()
    }
}

# Overwrites a few scattered ranges in place.
function script:Edit-TestVolume {
    param([string] $Path, [int] $Seed)
    $Path = $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($Path)
    $rnd = [System.Random]::new($Seed)
    $stream = [System.IO.File]::Open($Path, 'Open', 'ReadWrite')
    try {
        foreach ($n in 1..6) {
            $data = [byte[]]::new($rnd.Next(1, 200000))
            $rnd.NextBytes($data)
            $stream.Position = $rnd.NextInt64(0, $stream.Length - $data.Length)
            $stream.Write($data, 0, $data.Length)
        }
    }
    finally {
        $stream.Dispose()
    }
}

function script:Get-Sha { param([string] $Path) (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash }
