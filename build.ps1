#Requires -Version 7.4
<#
.SYNOPSIS
    Builds, tests and packages the BlockBackup module.
.DESCRIPTION
    Build    dotnet build: lays out the importable module in out/BlockBackup.
    Test     dotnet test (xunit: engine, module contract; system tests skip without root).
    Pester   the end-to-end Pester 5 suite in tests/ against out/BlockBackup.
    Package  out/package/BlockBackup.<version>.nupkg (Publish-PSResource to a local repository)
             and a .zip of the module folder.
    All      all of the above, in order.
.EXAMPLE
    ./build.ps1
.EXAMPLE
    ./build.ps1 -Task Pester
#>
[CmdletBinding()]
param(
    [ValidateSet('Build', 'Test', 'Pester', 'Package', 'All')]
    [string[]] $Task = 'All',

    [ValidateSet('Debug', 'Release')]
    [string] $Configuration = 'Release'
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest
$root = $PSScriptRoot
$moduleDir = Join-Path $root 'out/BlockBackup'

function Invoke-Native {
    param([string] $File, [string[]] $Arguments)
    & $File @Arguments
    if ($LASTEXITCODE -ne 0) { throw "$File $($Arguments -join ' ') failed with exit code $LASTEXITCODE" }
}

$tasks = if ($Task -contains 'All') { 'Build', 'Test', 'Pester', 'Package' } else { $Task }

if ($tasks -contains 'Build') {
    Invoke-Native dotnet @('build', (Join-Path $root 'BlockBackup.sln'), '-c', $Configuration, '-nologo')
}

if ($tasks -contains 'Test') {
    Invoke-Native dotnet @('test', (Join-Path $root 'BlockBackup.sln'), '-c', $Configuration, '-nologo')
}

if ($tasks -contains 'Pester') {
    if (-not (Test-Path (Join-Path $moduleDir 'BlockBackup.psd1'))) {
        Invoke-Native dotnet @('build', (Join-Path $root 'src/BlockBackup/BlockBackup.csproj'), '-c', $Configuration, '-nologo')
    }
    $pester = Get-Module -ListAvailable Pester | Where-Object Version -GE ([version]'5.0.0') | Sort-Object Version -Descending | Select-Object -First 1
    if (-not $pester) {
        throw 'Pester 5 is not installed: Install-Module Pester -MinimumVersion 5.0.0 -Scope CurrentUser'
    }
    $quote = { param($text) "'" + ($text -replace "'", "''") + "'" }
    # A fresh process, so the module under test is not already loaded in this session.
    $script = @"
Import-Module $(& $quote $pester.Path)
`$config = New-PesterConfiguration
`$config.Run.Path = $(& $quote (Join-Path $root 'tests'))
`$config.Run.Exit = `$true
`$config.Output.Verbosity = 'Detailed'
`$config.TestResult.Enabled = `$true
`$config.TestResult.OutputPath = $(& $quote (Join-Path $root 'out/pester-results.xml'))
Invoke-Pester -Configuration `$config
"@
    Invoke-Native (Get-Process -Id $PID).Path @('-NoProfile', '-NonInteractive', '-Command', $script)
}

if ($tasks -contains 'Package') {
    $manifest = Import-PowerShellDataFile (Join-Path $moduleDir 'BlockBackup.psd1')
    $packageDir = Join-Path $root 'out/package'
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
