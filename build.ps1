#Requires -Version 7.4
<#
.SYNOPSIS
    Builds, tests, installs and packages the BlockBackup module.
.DESCRIPTION
    Build    dotnet build: lays out the importable module in out/BlockBackup.
    Test     Xunit, then Pester: every test the project has.
    Xunit    dotnet test BlockBackup.sln (engine and module contract tests).
    Pester   the end-to-end Pester suite (tests/Pester) in a fresh pwsh against out/BlockBackup,
             with the pinned Pester 5.9.1 that tests/tools/TestTools.proj restores from NuGet.
    Install  copies out/BlockBackup into a module path (-Scope CurrentUser or AllUsers), so that
             `Import-Module BlockBackup` works in jobs, runbooks and scheduled tasks.
    Package  out/package/BlockBackup-<version>.zip of the module folder, and a .nupkg when
             PSResourceGet is available.
    All      Build, Test, Package.
    Run it under any pwsh 7.4+; `dotnet tool restore` provides the pinned PowerShell 7.6.9 as
    `dotnet pwsh`.
.PARAMETER NoSkip
    Treat a skipped test as a failure (CI: every test must run there).
.EXAMPLE
    dotnet pwsh ./build.ps1 -Task Test
.EXAMPLE
    ./build.ps1 -Task Build, Install
#>
[CmdletBinding()]
param(
    [Parameter(Position = 0)]
    [ValidateSet('Build', 'Test', 'Xunit', 'Pester', 'Install', 'Package', 'All')]
    [string[]] $Task = 'All',

    [ValidateSet('Debug', 'Release')]
    [string] $Configuration = 'Release',

    [ValidateSet('CurrentUser', 'AllUsers')]
    [string] $Scope = 'CurrentUser',

    [switch] $NoSkip
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest
$root = $PSScriptRoot
$out = Join-Path $root 'out'
$moduleDir = Join-Path $out 'BlockBackup'
$pesterVersion = '5.9.1'

function Invoke-Native {
    param([string] $File, [string[]] $Arguments)
    & $File @Arguments
    if ($LASTEXITCODE -ne 0) { throw "$File $($Arguments -join ' ') failed with exit code $LASTEXITCODE" }
}

# The pwsh that runs this script, whatever launched it: a dotnet-tool pwsh is a launcher whose
# process is `dotnet`, so neither (Get-Process -Id $PID).Path nor [Environment]::ProcessPath will do.
function Get-PwshPath {
    $name = if ($IsWindows) { 'pwsh.exe' } else { 'pwsh' }
    $path = Join-Path $PSHOME $name
    if (-not (Test-Path -LiteralPath $path)) { throw "No $name in `$PSHOME ($PSHOME)." }
    $path
}

function Get-PesterManifest {
    Invoke-Native dotnet @('restore', (Join-Path $root 'tests/tools/TestTools.proj'), '-nologo', '-v', 'q')
    $packages = $env:NUGET_PACKAGES
    if (-not $packages) {
        $line = & dotnet nuget locals global-packages --list
        $packages = ($line -replace '^global-packages:\s*', '').Trim()
    }
    $manifest = Join-Path $packages "pester/$pesterVersion/tools/Pester.psd1"
    if (-not (Test-Path -LiteralPath $manifest)) { throw "Pester $pesterVersion was restored but $manifest is missing." }
    $manifest
}

function Invoke-Xunit {
    $results = Join-Path $out 'test-results/xunit'
    if (Test-Path -LiteralPath $results) { Remove-Item -LiteralPath $results -Recurse -Force }
    & dotnet test (Join-Path $root 'BlockBackup.sln') -c $Configuration -nologo `
        --logger 'console;verbosity=normal' --logger trx --results-directory $results
    $exitCode = $LASTEXITCODE
    $outcomes = foreach ($trx in Get-ChildItem -LiteralPath $results -Filter *.trx -ErrorAction SilentlyContinue) {
        ([xml](Get-Content -Raw -LiteralPath $trx.FullName)).TestRun.Results.UnitTestResult
    }
    # A long run's failures scroll far above its end (and CI logs keep the end): repeat them last.
    $failed = @($outcomes | Where-Object outcome -EQ 'Failed')
    foreach ($test in $failed) {
        $message = if ($test.PSObject.Properties['Output']) { "$($test.Output.ErrorInfo.Message)".Trim() } else { '' }
        Write-Host "FAILED $($test.testName) [$($test.duration)]: $($message.Substring(0, [Math]::Min(2000, $message.Length)))"
    }
    if ($exitCode -ne 0) { throw "dotnet test failed with exit code $exitCode ($($failed.Count) failed test(s) listed above)" }
    $skipped = $outcomes | Where-Object outcome -EQ 'NotExecuted' | ForEach-Object testName
    if ($skipped) {
        $message = "xunit skipped $(@($skipped).Count) test(s): $($skipped -join '; ')"
        if ($NoSkip) { throw "$message (-NoSkip: every test must run here)" }
        Write-Warning $message
    }
}

function Invoke-PesterSuite {
    if (-not (Test-Path -LiteralPath (Join-Path $moduleDir 'BlockBackup.psd1'))) {
        Invoke-Native dotnet @('build', (Join-Path $root 'src/BlockBackup/BlockBackup.csproj'), '-c', $Configuration, '-nologo')
    }
    $quote = { param($text) "'" + ($text -replace "'", "''") + "'" }
    $resultFile = Join-Path $out 'test-results/pester.xml'
    New-Item -ItemType Directory -Force -Path (Split-Path $resultFile) | Out-Null
    # A fresh process, so the module under test is not already loaded in this session.
    $script = @"
`$ErrorActionPreference = 'Stop'
Import-Module $(& $quote (Get-PesterManifest)) -RequiredVersion $pesterVersion
`$config = New-PesterConfiguration
`$config.Run.Path = $(& $quote (Join-Path $root 'tests/Pester'))
`$config.Run.PassThru = `$true
`$config.Output.Verbosity = 'Detailed'
`$config.TestResult.Enabled = `$true
`$config.TestResult.OutputPath = $(& $quote $resultFile)
`$result = Invoke-Pester -Configuration `$config
`$skipped = @(`$result.Skipped)
if (`$skipped.Count) {
    `$names = (`$skipped | ForEach-Object ExpandedPath) -join '; '
    if (`$$([bool]$NoSkip)) { Write-Host "Pester skipped `$(`$skipped.Count) test(s) (-NoSkip: every test must run here): `$names"; exit 2 }
    Write-Warning "Pester skipped `$(`$skipped.Count) test(s): `$names"
}
if (`$result.Result -ne 'Passed') {
    foreach (`$test in `$result.Failed) { Write-Host "FAILED `$(`$test.ExpandedPath): `$(`$test.ErrorRecord | Select-Object -First 1)" }
    exit 1
}
"@
    $runner = Join-Path $out 'test-results/run-pester.ps1'
    Set-Content -LiteralPath $runner -Value $script
    Invoke-Native (Get-PwshPath) @('-NoProfile', '-NonInteractive', '-File', $runner)
}

# The installed DSC v3 manifest runs the resource with this pwsh by its full path: dsc looks an
# executable up on PATH (then in the manifest's folder), and a pwsh that is a dotnet tool, as in the
# README's set-up, is on neither. (The built manifest runs the blockbackup-dsc launcher instead,
# which looks for a pwsh at each run.)
function Set-DscManifestPwsh([string] $Path) {
    $dscManifest = Get-Content -Raw -LiteralPath $Path | ConvertFrom-Json -AsHashtable
    $script = Join-Path (Split-Path -Parent $Path) 'BlockBackupPolicy.dsc.ps1'
    foreach ($operation in 'get', 'set', 'whatIf', 'test', 'delete') {
        $dscManifest[$operation].executable = Get-PwshPath
        $dscManifest[$operation].args = @('-NoLogo', '-NonInteractive', '-NoProfile', '-File', $script, '-Operation', $operation.ToLowerInvariant())
    }
    Set-Content -LiteralPath $Path -Value ($dscManifest | ConvertTo-Json -Depth 20)
}

function Install-BlockBackup {
    $manifest = Import-PowerShellDataFile (Join-Path $moduleDir 'BlockBackup.psd1')
    $base = if ($IsWindows) {
        if ($Scope -eq 'AllUsers') { Join-Path $env:ProgramFiles 'PowerShell/Modules' }
        else { Join-Path ([Environment]::GetFolderPath('MyDocuments')) 'PowerShell/Modules' }
    }
    elseif ($Scope -eq 'AllUsers') { '/usr/local/share/powershell/Modules' }
    else {
        $data = if ($env:XDG_DATA_HOME) { $env:XDG_DATA_HOME } else { Join-Path $HOME '.local/share' }
        Join-Path $data 'powershell/Modules'
    }
    $destination = Join-Path $base "BlockBackup/$($manifest.ModuleVersion)"
    if (Test-Path -LiteralPath $destination) { Remove-Item -LiteralPath $destination -Recurse -Force }
    New-Item -ItemType Directory -Force -Path $destination | Out-Null
    Copy-Item -Path (Join-Path $moduleDir '*') -Destination $destination -Recurse
    Set-DscManifestPwsh (Join-Path $destination 'BlockBackup.dsc.resource.json')
    Write-Host "Installed BlockBackup $($manifest.ModuleVersion) in $destination (Import-Module BlockBackup)"
}

function New-BlockBackupPackage {
    $manifest = Import-PowerShellDataFile (Join-Path $moduleDir 'BlockBackup.psd1')
    $packageDir = Join-Path $out 'package'
    New-Item -ItemType Directory -Force -Path $packageDir | Out-Null
    $zip = Join-Path $packageDir "BlockBackup-$($manifest.ModuleVersion).zip"
    Compress-Archive -Path $moduleDir -DestinationPath $zip -Force
    Write-Host "Packaged $zip"
    if (Get-Command Publish-PSResource -ErrorAction SilentlyContinue) {
        $repoName = 'BlockBackupLocal'
        Unregister-PSResourceRepository -Name $repoName -ErrorAction SilentlyContinue
        Register-PSResourceRepository -Name $repoName -Uri $packageDir -Trusted
        try {
            Publish-PSResource -Path $moduleDir -Repository $repoName
            Write-Host "Published BlockBackup $($manifest.ModuleVersion) to $packageDir (nupkg)"
        }
        finally {
            Unregister-PSResourceRepository -Name $repoName
        }
    }
}

$tasks = if ($Task -contains 'All') { 'Build', 'Test', 'Package' } else { $Task }
if ($tasks -contains 'Test') { $tasks = @($tasks | Where-Object { $_ -ne 'Test' }) + 'Xunit', 'Pester' }

if ($tasks -contains 'Build') { Invoke-Native dotnet @('build', (Join-Path $root 'BlockBackup.sln'), '-c', $Configuration, '-nologo') }
if ($tasks -contains 'Xunit') { Invoke-Xunit }
if ($tasks -contains 'Pester') { Invoke-PesterSuite }
if ($tasks -contains 'Install') { Install-BlockBackup }
if ($tasks -contains 'Package') { New-BlockBackupPackage }
