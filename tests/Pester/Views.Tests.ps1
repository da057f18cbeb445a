#Requires -Version 7.4
#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }
<#
    The default views (BlockBackup.format.ps1xml) at 80 columns (Out-String -Width 80) keep what
    tells one row from another: the volume of each status row, the reason of each run, the issues
    of a failed verification (long cells wrap, nothing is cut or dropped); and Get-BackupRepository's
    header does not wrap at 120. A wrapped cell reads whole once the text's whitespace is removed.
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    $env:BLOCKBACKUP_CONFIG_DIR = Join-Path $TestDrive 'config'
    $script:dir = Join-Path $TestDrive 'a/directory/deep/enough/that/two/volume/paths/only/differ/at/the/end'
    New-Item -ItemType Directory -Force -Path $dir | Out-Null
    $script:present = Join-Path $dir 'disk-a.img'
    $script:missing = Join-Path $dir 'disk-b.img'
    New-TestVolume -Path $present -MiB 1
    $script:repo = Join-Path $TestDrive 'repo'
    New-BackupPolicy -Name twovolumes -Path $present, $missing -Repository $repo -Schedule '0 2 * * *' -KeepLast 2 | Out-Null
    $script:runs = @(Invoke-BackupPolicy -Name twovolumes -ErrorAction SilentlyContinue)
    function script:Get-Flat([string] $Text) { $Text -replace '\s', '' }
}

AfterAll {
    Remove-Item Env:BLOCKBACKUP_CONFIG_DIR -ErrorAction SilentlyContinue
}

Describe 'Default views at 80 columns' {
    It 'Get-BackupPolicyStatus keeps each volume whole' {
        $text = Get-BackupPolicyStatus -Name twovolumes | Out-String -Width 80
        ($text -split "`n" | Where-Object { $_.TrimEnd().Length -gt 80 }) | Should -BeNullOrEmpty
        (Get-Flat $text) | Should -BeLike "*$(Get-Flat $present)*"
        (Get-Flat $text) | Should -BeLike "*$(Get-Flat $missing)*"
    }

    It 'Invoke-BackupPolicy keeps each reason whole, and the end of each volume' {
        $runs.Count | Should -Be 2
        $text = $runs | Out-String -Width 80
        foreach ($run in $runs) {
            $why = if ($run.Error) { $run.Error } else { $run.Reason }
            $why | Should -Not -BeNullOrEmpty
            (Get-Flat $text) | Should -BeLike "*$(Get-Flat $why)*"
        }
        $text | Should -Match 'disk-a\.img'
        $text | Should -Match 'disk-b\.img'
    }

    It 'Test-VolumeBackup keeps the Issues of a damaged backup, under a header that does not wrap' {
        $backup = Get-VolumeBackup -Repository $repo | Select-Object -First 1
        $object = Get-ChildItem -LiteralPath $repo -Recurse -File | Where-Object Name -Match '-00001$' | Select-Object -First 1
        $bytes = [IO.File]::ReadAllBytes($object.FullName)
        $bytes[100] = $bytes[100] -bxor 0xFF
        [IO.File]::WriteAllBytes($object.FullName, $bytes)
        $result = $backup | Test-VolumeBackup
        $result.IsValid | Should -BeFalse
        $text = $result | Out-String -Width 80
        $header = ($text -split "`n" | Where-Object { $_ -match '^BackupId' })
        $header | Should -Match 'Issues\s*$'
        (Get-Flat $text) | Should -BeLike "*$(Get-Flat $result.Issues[0].ToString())*"
    }

    It 'Get-BackupPolicy keeps every volume path and the end of the repository' {
        $text = Get-BackupPolicy -Name twovolumes | Out-String -Width 80
        ($text -split "`n" | Where-Object { $_.TrimEnd().Length -gt 80 }) | Should -BeNullOrEmpty
        (Get-Flat $text) | Should -BeLike "*$(Get-Flat $present)*"
        (Get-Flat $text) | Should -BeLike "*$(Get-Flat $missing)*"
        $text | Should -Match ([regex]::Escape('…' + $repo.Substring($repo.Length - 15)))
    }

    It 'Get-BackupSchedule shows the kind, the state and every file' {
        $units = Join-Path $TestDrive 'units'
        $text = Register-BackupSchedule -Kind Systemd -Destination $units -Confirm:$false -PassThru | Out-String -Width 80
        $text | Should -Match '(?m)^Kind\s+IsRegistered\s+IsCurrent\s+Locations\s*$'
        (Get-Flat $text) | Should -BeLike "*$(Get-Flat (Join-Path $units 'blockbackup.service'))*"
        (Get-Flat $text) | Should -BeLike "*$(Get-Flat (Join-Path $units 'blockbackup.timer'))*"
    }
}

Describe 'Get-BackupRepository in a 120-column console' {
    It 'has a header on one line' {
        Register-BackupRepository -Name offsite -Uri s3://volumebackups/node1 -Endpoint https://s3.example.com:9000 -UserName AKIAEXAMPLE -SecretEnvironmentVariable BB_VIEW_SECRET
        $text = Get-BackupRepository -Name offsite | Out-String -Width 119   # a 120-column console formats 119 characters
        $text | Should -Match '(?m)^Name\s+Uri\s+Endpoint\s+UserName\s+CredentialSource\s*$'
    }
}
