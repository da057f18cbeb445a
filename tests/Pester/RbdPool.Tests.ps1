#Requires -Version 7.4
#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
}

AfterAll {
    Remove-Module BlockBackup -ErrorAction SilentlyContinue
}

Describe 'Ceph RBD backup pools and the differential restore rules' -Skip:(-not $env:BLOCKBACKUP_CEPH_CONF) {
    BeforeAll {
        $script:conf = $env:BLOCKBACKUP_CEPH_CONF
        $script:ceph = @{ CephConfig = $conf }
        $script:tag = ([guid]::NewGuid().ToString('N')).Substring(0, 8)
        $script:images = [System.Collections.Generic.List[string]]::new()

        function script:Invoke-Rbd {
            $output = & rbd --conf $conf @args 2>&1
            if ($LASTEXITCODE -ne 0) { throw "rbd $($args -join ' ') failed: $output" }
            $output
        }

        # Imports a local file as a new RBD image.
        function script:New-RbdImage {
            param([string] $Name, [string] $From)
            Invoke-Rbd import --no-progress --image-format 2 $From "rbd/$Name" | Out-Null
            $images.Add("rbd/$Name")
            "rbd/$Name"
        }

        function script:Get-RbdSha {
            param([string] $Spec)
            $file = Join-Path $TestDrive "export-$([guid]::NewGuid()).img"
            Invoke-Rbd export --no-progress $Spec $file | Out-Null
            try { Get-Sha $file } finally { Remove-Item -LiteralPath $file }
        }

        # The names of an image's snapshots (none: an empty list, not one null).
        function script:Get-RbdSnapshotName {
            param([string] $Spec)
            @(& rbd --conf $conf snap ls --format json $Spec 2>$null | ConvertFrom-Json | ForEach-Object name)
        }

        # Runs a backup in a child pwsh and kills it (kill -9, with the rbd children it started)
        # once -Started says it is under way; true when it was caught before it finished.
        function script:Stop-BackupWhenStarted {
            param([string] $Command, [scriptblock] $Started)
            $start = [System.Diagnostics.ProcessStartInfo]::new($Pwsh)
            foreach ($a in '-NoProfile', '-NonInteractive', '-Command', "Import-Module '$ModuleManifest'; $Command | Out-Null") {
                $start.ArgumentList.Add($a)
            }
            $start.RedirectStandardOutput = $true
            $child = [System.Diagnostics.Process]::Start($start)
            $clock = [System.Diagnostics.Stopwatch]::StartNew()
            while (-not $child.HasExited -and $clock.Elapsed.TotalSeconds -lt 120 -and -not (& $Started)) {
                Start-Sleep -Milliseconds 20
            }
            if ($child.HasExited) { return $false }
            $child.Kill($true)
            $child.WaitForExit()
            $true
        }

        # Backs up a new image into a new file repository and kills the backup (kill -9) while it
        # reads the image; checks it left its snapshot and the image's mark naming it.
        function script:New-KilledFileBackupOfRbd {
            param([string] $Name)
            # 4 bits of entropy a byte: bz2 works on it (random bytes would be stored as they are), for seconds.
            $local = Join-Path $TestDrive "rbd-file-kill-$Name-source.img"
            $block = [byte[]]::new(1MB)
            [System.Random]::new(79).NextBytes($block)
            for ($i = 0; $i -lt $block.Length; $i++) { $block[$i] = $block[$i] -band 15 }
            $bytes = [byte[]]::new(96MB)
            for ($k = 0; $k -lt 96; $k++) { [Array]::Copy($block, 0, $bytes, $k * 1MB, 1MB); $block[$k] = $block[$k] -bxor 1 }
            [System.IO.File]::WriteAllBytes($local, $bytes)
            $imageSha = Get-Sha $local
            $image = New-RbdImage -Name "pester-fkill-$Name-$tag" -From $local
            $repo = Join-Path $TestDrive "rbd-file-kill-$Name-repo"
            $killed = $false
            for ($attempt = 0; $attempt -lt 3 -and -not $killed; $attempt++) {
                # Under way once its snapshot of the source exists.
                $killed = Stop-BackupWhenStarted "New-VolumeBackup -RbdImage '$image' -Repository '$repo' -Name 'pester-$tag-file-killed' -Compression bz2 -CephConfig '$conf'" {
                    (Get-RbdSnapshotName $image).Count -gt 0
                }
                if (-not $killed -or (Get-VolumeBackup -Repository $repo)) {
                    # Finished before it could be caught: remove it and try again.
                    $killed = $false
                    Get-VolumeBackup -Repository $repo | Remove-VolumeBackup -Confirm:$false
                    Invoke-Rbd snap purge --no-progress $image | Out-Null
                }
            }
            $killed | Should -BeTrue -Because 'the backup must be killed while it reads the image'

            # It left its snapshot on the user's image, and the mark on the image that names it.
            $taken = @(Get-RbdSnapshotName $image)
            $taken.Count | Should -Be 1
            $mark = (Invoke-Rbd image-meta list --format json $image | ConvertFrom-Json).PSObject.Properties | Where-Object Name -like 'blockbackup.inflight.*'
            @($mark).Count | Should -Be 1
            $mark.Value | Should -Match ([regex]::Escape($taken[0]))
            [pscustomobject]@{ Image = $image; Repository = $repo; Snapshot = $taken[0]; Sha = $imageSha }
        }

        $local = Join-Path $TestDrive 'rbd-source.img'
        New-TestVolume -Path $local -MiB 16 -Seed 21
        $script:sourceSha = Get-Sha $local
        $script:source = New-RbdImage -Name "pester-src-$tag" -From $local
        $script:backup = New-VolumeBackup -RbdImage $source -Repository rbd:backups -Name "pester-$tag" @ceph
    }

    AfterAll {
        Get-VolumeBackup -Repository rbd:backups @ceph | Where-Object Name -Like "pester-$tag*" |
            Sort-Object CreatedUtc -Descending | Remove-VolumeBackup -IncludeDependents -Confirm:$false @ceph -ErrorAction SilentlyContinue
        foreach ($image in $images) {
            & rbd --conf $conf snap purge --no-progress $image 2>$null
            & rbd --conf $conf rm --no-progress $image 2>$null
        }
    }

    It 'backs up an RBD image into the pool as Cinder names it' {
        $backup.Repository | Should -Be 'rbd:backups'
        $backup.Container | Should -Be "volume-$($backup.VolumeId).backup.$($backup.Id)"
        $backup.Prefix | Should -Match "^backup\.$($backup.Id)\.snap\.\d+\.\d+$"
        (Get-VolumeBackup -Repository rbd:backups -Name "pester-$tag" @ceph).Id | Should -Be $backup.Id
        (Test-VolumeBackup -Repository rbd:backups -BackupId $backup.Id @ceph).IsValid | Should -BeTrue
        ($backup | Export-VolumeBackupRecord @ceph).BackupService | Should -Be 'cinder.backup.drivers.ceph.CephBackupDriver'
    }

    It 'restores into an empty RBD image differentially (DifferentialAllowed)' {
        $target = "rbd/pester-empty-$tag"
        $images.Add($target)
        $result = $backup | Restore-VolumeBackup -TargetRbdImage $target @ceph
        $result.Path | Should -Be 'Differential'
        $result.Decision.Rule | Should -Be 'DifferentialAllowed'
        $result.Decision.Reason | Should -Not -BeNullOrEmpty
        Get-RbdSha $target | Should -Be $sourceSha
    }

    It 'refuses a non-empty RBD target without -Force, then copies in full (TargetHasExtents)' {
        $junk = Join-Path $TestDrive 'junk.img'
        New-TestVolume -Path $junk -MiB 16 -Seed 77
        $target = New-RbdImage -Name "pester-dirty-$tag" -From $junk
        { $backup | Restore-VolumeBackup -TargetRbdImage $target @ceph -ErrorAction Stop } | Should -Throw -ErrorId 'TargetHasData*'
        $result = $backup | Restore-VolumeBackup -TargetRbdImage $target -Force -Confirm:$false @ceph
        $result.Path | Should -Be 'Full'
        $result.Decision.Rule | Should -Be 'TargetHasExtents'
        Get-RbdSha $target | Should -Be $sourceSha
    }

    It 'copies in full onto the backup''s own source volume (TargetIsSourceVolume)' {
        $result = $backup | Restore-VolumeBackup -TargetRbdImage $source -Force -Confirm:$false @ceph
        $result.Path | Should -Be 'Full'
        $result.Decision.Rule | Should -Be 'TargetIsSourceVolume'
        Get-RbdSha $source | Should -Be $sourceSha
    }

    It 'copies in full to a file (TargetNotRbd), and shows the decision under -WhatIf without writing' {
        $file = Join-Path $TestDrive 'from-rbd.img'
        $backup | Restore-VolumeBackup -TargetPath $file -WhatIf @ceph
        Test-Path $file | Should -BeFalse
        $result = $backup | Restore-VolumeBackup -TargetPath $file @ceph
        $result.Path | Should -Be 'Full'
        $result.Decision.Rule | Should -Be 'TargetNotRbd'
        Get-Sha $file | Should -Be $sourceSha
    }

    It 'copies in full when the backup''s snapshot was removed from its base (NoRestorePoint)' {
        $other = New-VolumeBackup -RbdImage $source -Repository rbd:backups -Name "pester-$tag-nosnap" @ceph
        Invoke-Rbd snap rm --no-progress "backups/$($other.Container)@$($other.Prefix)" | Out-Null
        $target = "rbd/pester-nosnap-$tag"
        $images.Add($target)
        $result = Restore-VolumeBackup -Repository rbd:backups -BackupId $other.Id -TargetRbdImage $target @ceph
        $result.Path | Should -Be 'Full'
        $result.Decision.Rule | Should -Be 'NoRestorePoint'
        Get-RbdSha $target | Should -Be $sourceSha
    }

    It 'copies in full from the legacy base name when the recorded base is missing (BaseImageMissing)' {
        $other = New-VolumeBackup -RbdImage $source -Repository rbd:backups -Name "pester-$tag-legacy" @ceph
        Invoke-Rbd rename "backups/$($other.Container)" "backups/volume-$($other.VolumeId).backup.base" | Out-Null
        $images.Add("backups/volume-$($other.VolumeId).backup.base")
        $file = Join-Path $TestDrive 'legacy.img'
        $result = Restore-VolumeBackup -Repository rbd:backups -BackupId $other.Id -TargetPath $file @ceph
        $result.Path | Should -Be 'Full'
        $result.Decision.Rule | Should -Be 'BaseImageMissing'
        Get-Sha $file | Should -Be $sourceSha
    }

    It 'backs up an RBD image into a file repository, differentially, and restores it exactly' {
        $repo = Join-Path $TestDrive 'rbd-to-file'
        $full = New-VolumeBackup -RbdImage $source -Repository $repo -Name "pester-$tag-file" @ceph
        $full.Consistency | Should -Be 'rbd-snapshot'
        $full.Repository | Should -Be (Resolve-Path $repo).ProviderPath
        $output = New-VolumeBackup -RbdImage $source -Repository $repo -Incremental -Verbose @ceph 4>&1
        $incr = $output | Where-Object { $_ -is [BlockBackup.Engine.BackupInfo] }
        (($output | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }).Message -join "`n") | Should -Match 'incremental of'

        $incr.ParentId | Should -Be $full.Id
        $file = Join-Path $TestDrive 'rbd-to-file.img'
        ($incr | Restore-VolumeBackup -TargetPath $file).Path | Should -Be 'Chain'
        Get-Sha $file | Should -Be $sourceSha
        Test-VolumeBackup -Repository $repo -BackupId $incr.Id -IncludeChain -Quiet | Should -BeTrue
        Remove-VolumeBackup -Repository $repo -BackupId $full.Id -IncludeDependents -Confirm:$false
        Get-VolumeBackup -Repository $repo | Should -BeNullOrEmpty
    }

    It 'removes the source snapshot of an RBD backup into a file repository killed mid-read (kill -9) at the next backup' {
        $killed = New-KilledFileBackupOfRbd -Name next
        $image = $killed.Image
        $repo = $killed.Repository
        $taken = $killed.Snapshot
        $imageSha = $killed.Sha

        # The next backup of the image into the repository removes both, says so, and restores exactly.
        $output = New-VolumeBackup -RbdImage $image -Repository $repo -Name "pester-$tag-file-after-kill" -Verbose @ceph 4>&1
        $next = $output | Where-Object { $_ -is [BlockBackup.Engine.BackupInfo] }
        (($output | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }).Message -join "`n") | Should -Match ([regex]::Escape("Removed snapshot $image@$taken"))
        (Get-RbdSnapshotName $image).Count | Should -Be 1 -Because 'only the new backup''s snapshot remains'
        (Get-RbdSnapshotName $image) | Should -Not -Contain $taken
        (Invoke-Rbd image-meta list --format json $image | ConvertFrom-Json).PSObject.Properties.Name | Where-Object { $_ -like 'blockbackup.inflight*' } | Should -BeNullOrEmpty
        $out = Join-Path $TestDrive 'rbd-file-kill-next.img'
        Restore-VolumeBackup -Repository $repo -BackupId $next.Id -TargetPath $out -ErrorAction Stop | Out-Null
        Get-Sha $out | Should -Be $imageSha
    }

    It 'removes the source snapshot of an RBD backup into a file repository killed mid-read (kill -9) with Remove-VolumeBackup -Incomplete' {
        $killed = New-KilledFileBackupOfRbd -Name incomplete
        $leftover = Get-VolumeBackup -Repository $killed.Repository -IncludeIncomplete | Where-Object Status -eq Incomplete
        @($leftover).Count | Should -Be 1

        # -WhatIf names the leftover and changes nothing, on the image either.
        Remove-VolumeBackup -Repository $killed.Repository -Incomplete -WhatIf @ceph
        Get-RbdSnapshotName $killed.Image | Should -Be $killed.Snapshot

        $output = Remove-VolumeBackup -Repository $killed.Repository -Incomplete -PassThru -Verbose -Confirm:$false @ceph 4>&1
        ($output | Where-Object { $_ -is [BlockBackup.Engine.BackupInfo] }).Id | Should -Be $leftover.Id
        (($output | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }).Message -join "`n") |
            Should -Match ([regex]::Escape("Removed snapshot $($killed.Image)@$($killed.Snapshot) that incomplete backup $($leftover.Id)"))
        Get-RbdSnapshotName $killed.Image | Should -BeNullOrEmpty
        (Invoke-Rbd image-meta list --format json $killed.Image | ConvertFrom-Json).PSObject.Properties.Name | Where-Object { $_ -like 'blockbackup.inflight*' } | Should -BeNullOrEmpty
        Get-VolumeBackup -Repository $killed.Repository -IncludeIncomplete | Should -BeNullOrEmpty

        # The image is untouched and backs up afresh.
        $full = New-VolumeBackup -RbdImage $killed.Image -Repository $killed.Repository @ceph
        $out = Join-Path $TestDrive 'rbd-file-kill-incomplete.img'
        Restore-VolumeBackup -Repository $killed.Repository -BackupId $full.Id -TargetPath $out -ErrorAction Stop | Out-Null
        Get-Sha $out | Should -Be $killed.Sha
    }

    It 'chains, refuses to delete a parent, and deletes snapshots and the base' {
        $incr = New-VolumeBackup -RbdImage $source -Repository rbd:backups -Incremental -Parent $backup.Id -Name "pester-$tag-incr" @ceph
        $incr.ParentId | Should -Be $backup.Id
        (Get-BackupChain -Repository rbd:backups -BackupId $incr.Id @ceph).Id | Should -Be @($backup.Id, $incr.Id)
        (Get-BackupChain -Repository rbd:backups -BackupId $incr.Id @ceph | Test-VolumeBackup @ceph).IsValid | Should -Be @($true, $true)
        { Remove-VolumeBackup -Repository rbd:backups -BackupId $backup.Id -Confirm:$false @ceph -ErrorAction Stop } | Should -Throw -ErrorId 'BackupHasDependents*'
        $removed = Remove-VolumeBackup -Repository rbd:backups -BackupId $backup.Id -IncludeDependents -Confirm:$false -PassThru @ceph
        $removed.Id | Should -Be @($incr.Id, $backup.Id)
        & rbd --conf $conf info "backups/$($backup.Container)" 2>$null
        $LASTEXITCODE | Should -Not -Be 0
    }

    It 'lists nothing of a pool backup killed mid-transfer (kill -9), and the next backup of the image works' {
        # 192 MiB of random data: the export-diff | import-diff takes long enough to be caught.
        $local = Join-Path $TestDrive 'rbd-kill.img'
        $bytes = [byte[]]::new(192MB)
        [System.Random]::new(77).NextBytes($bytes)
        [System.IO.File]::WriteAllBytes($local, $bytes)
        $killSha = Get-Sha $local
        $image = New-RbdImage -Name "pester-kill-$tag" -From $local
        $first = New-VolumeBackup -RbdImage $image -Repository rbd:backups -Name "pester-$tag-before-kill" @ceph
        $before = @(Invoke-Rbd ls backups)
        $earlier = @(Get-VolumeBackup -Repository rbd:backups @ceph)

        $killed = $false
        for ($attempt = 0; $attempt -lt 3 -and -not $killed; $attempt++) {
            # The transfer has begun once the new backup's base image exists in the pool.
            $killed = Stop-BackupWhenStarted "New-VolumeBackup -RbdImage '$image' -Repository rbd:backups -Name 'pester-$tag-killed' -CephConfig '$conf'" {
                @(& rbd --conf $conf ls backups 2>$null) | Where-Object { $_ -notin $before }
            }
            if (-not $killed) {
                # Finished before it could be caught: remove it and try again.
                Get-VolumeBackup -Repository rbd:backups -Name "pester-$tag-killed" @ceph | Remove-VolumeBackup -IncludeDependents -Confirm:$false @ceph
            }
        }
        $killed | Should -BeTrue -Because 'the backup must be killed while it transfers'

        # Nothing half-made is listed; the earlier backups are untouched and still restore.
        (Get-VolumeBackup -Repository rbd:backups -Name "pester-$tag-killed" @ceph) | Should -BeNullOrEmpty
        (@(Get-VolumeBackup -Repository rbd:backups @ceph).Id | Sort-Object) | Should -Be ($earlier.Id | Sort-Object)
        $check = Join-Path $TestDrive 'rbd-kill-earlier.img'
        Restore-VolumeBackup -Repository rbd:backups -BackupId $first.Id -TargetPath $check @ceph | Out-Null
        Get-Sha $check | Should -Be $killSha

        # What it left is known: its new base image, marked in flight before anything was copied.
        $leftover = @(Get-VolumeBackup -Repository rbd:backups -IncludeIncomplete @ceph | Where-Object { $_.Status -eq 'Incomplete' -and $_.Container -notin $before })
        $leftover.Count | Should -Be 1
        $leftover[0].Container | Should -BeIn @(Invoke-Rbd ls backups | Where-Object { $_ -notin $before })
        $leftover[0].Problem | Should -Match 'no longer runs'

        # The next backup of the image removes it (its process is gone), says so, and restores exactly.
        $output = New-VolumeBackup -RbdImage $image -Repository rbd:backups -Name "pester-$tag-after-kill" -Verbose @ceph 4>&1
        $next = $output | Where-Object { $_ -is [BlockBackup.Engine.BackupInfo] }
        (($output | Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }).Message -join "`n") | Should -Match ([regex]::Escape("Removed base image '$($leftover[0].Container)'"))
        @(Invoke-Rbd ls backups) | Should -Not -Contain $leftover[0].Container
        $leftover[0].Problem | Should -Match 'which took snapshot'
        (Get-RbdSnapshotName $image) | Should -Be @($first.Prefix, $next.Prefix) -Because 'the snapshot the killed backup took of the source goes with its base image'
        $out = Join-Path $TestDrive 'rbd-kill-next.img'
        Restore-VolumeBackup -Repository rbd:backups -BackupId $next.Id -TargetPath $out @ceph | Out-Null
        Get-Sha $out | Should -Be $killSha
        Remove-VolumeBackup -Repository rbd:backups -BackupId $next.Id -IncludeDependents -Confirm:$false @ceph
        @(Invoke-Rbd ls backups) | Where-Object { $_ -notin $before } | Should -BeNullOrEmpty -Because 'nothing of the killed backup is left in the pool'
        Remove-VolumeBackup -Repository rbd:backups -BackupId $first.Id -IncludeDependents -Confirm:$false @ceph
    }

    It 'cleans up after a pool incremental killed once it snapshotted the source (kill -9): its snapshot and mark go, the chain restores' {
        $local = Join-Path $TestDrive 'rbd-kill-incr.img'
        $bytes = [byte[]]::new(192MB)
        [System.Random]::new(78).NextBytes($bytes)
        [System.IO.File]::WriteAllBytes($local, $bytes)
        $image = New-RbdImage -Name "pester-killi-$tag" -From $local
        $first = New-VolumeBackup -RbdImage $image -Repository rbd:backups -Name "pester-$tag-incr-base" @ceph
        $firstSha = Get-RbdSha $image
        # Every object rewritten: the differential transfer is the whole image, long enough to be caught.
        Invoke-Rbd bench --io-type write --io-size 4M --io-total 192M --io-pattern seq $image | Out-Null
        $changedSha = Get-RbdSha $image
        $snapshotsBefore = @(Get-RbdSnapshotName $image)

        $killed = $false
        for ($attempt = 0; $attempt -lt 3 -and -not $killed; $attempt++) {
            # The backup is under way once its snapshot of the source exists.
            $killed = Stop-BackupWhenStarted "New-VolumeBackup -RbdImage '$image' -Repository rbd:backups -Incremental -Name 'pester-$tag-incr-killed' -CephConfig '$conf'" {
                Get-RbdSnapshotName $image | Where-Object { $_ -notin $snapshotsBefore }
            }
            if (-not $killed) {
                Get-VolumeBackup -Repository rbd:backups -Name "pester-$tag-incr-killed" @ceph | Remove-VolumeBackup -Confirm:$false @ceph
            }
        }
        $killed | Should -BeTrue -Because 'the backup must be killed while it runs'

        # Not listed as a backup; listed as what it is with -IncludeIncomplete, naming the snapshot it took.
        (Get-VolumeBackup -Repository rbd:backups -Name "pester-$tag-incr-killed" @ceph) | Should -BeNullOrEmpty
        $leftover = @(Get-VolumeBackup -Repository rbd:backups -IncludeIncomplete @ceph | Where-Object { $_.Status -eq 'Incomplete' -and $_.Container -eq $first.Container })
        $leftover.Count | Should -Be 1
        $leftover[0].Problem | Should -Match 'interrupted incremental backup'
        $leftover[0].Problem | Should -Match 'no longer runs'
        $taken = @(Get-RbdSnapshotName $image | Where-Object { $_ -notin $snapshotsBefore })
        @($taken).Count | Should -Be 1
        $leftover[0].Problem | Should -Match ([regex]::Escape("$image@$taken"))

        # -Incomplete removes the snapshot on the user's image and the mark on the base, nothing else.
        $removed = @(Remove-VolumeBackup -Repository rbd:backups -Incomplete -PassThru -Confirm:$false @ceph)
        $removed.Id | Should -Contain $leftover[0].Id
        (Get-RbdSnapshotName $image) | Should -Be $snapshotsBefore
        @(Invoke-Rbd image-meta list --format json "backups/$($first.Container)" | ConvertFrom-Json).PSObject.Properties.Name | Where-Object { $_ -like 'blockbackup.inflight*' } | Should -BeNullOrEmpty
        @(Get-VolumeBackup -Repository rbd:backups -IncludeIncomplete @ceph | Where-Object { $_.Status -eq 'Incomplete' -and $_.Container -eq $first.Container }) | Should -BeNullOrEmpty

        # The chain is intact: the next incremental works, and both points restore exactly.
        $next = New-VolumeBackup -RbdImage $image -Repository rbd:backups -Incremental -Name "pester-$tag-incr-after-kill" @ceph
        $next.ParentId | Should -Be $first.Id
        $out = Join-Path $TestDrive 'rbd-kill-incr-next.img'
        Restore-VolumeBackup -Repository rbd:backups -BackupId $next.Id -TargetPath $out @ceph | Out-Null
        Get-Sha $out | Should -Be $changedSha
        $out = Join-Path $TestDrive 'rbd-kill-incr-first.img'
        Restore-VolumeBackup -Repository rbd:backups -BackupId $first.Id -TargetPath $out @ceph | Out-Null
        Get-Sha $out | Should -Be $firstSha
        Remove-VolumeBackup -Repository rbd:backups -BackupId $first.Id -IncludeDependents -Confirm:$false @ceph
    }

    It 'keeps stable error ids for bad image names and unreachable clusters, and librados says nothing on the console' {
        { New-VolumeBackup -RbdImage 'not a spec' -Repository rbd:backups @ceph -ErrorAction Stop } | Should -Throw -ErrorId '*,BlockBackup.Commands.NewVolumeBackupCommand'
        $noMon = Join-Path $TestDrive 'nomon.conf'
        Set-Content -LiteralPath $noMon -Value "[global]`nauth client required = none"
        $stderr = Join-Path $TestDrive 'stderr.txt'
        & $Pwsh -NoProfile -NonInteractive -Command "Import-Module '$ModuleManifest'; try { Get-VolumeBackup -Repository rbd:backups -CephConfig '$noMon' -ErrorAction Stop } catch { `$_.FullyQualifiedErrorId; `$_.Exception.Message }" 2> $stderr |
            Out-String | Should -Match '(?s)CephConnectionFailed,BlockBackup.Commands.GetVolumeBackupCommand.*mon_host'
        Get-Content -Raw -LiteralPath $stderr | Should -BeNullOrEmpty
    }

    It 'samples the pool''s backups in rotation' {
        $env:BLOCKBACKUP_CONFIG_DIR = Join-Path $TestDrive 'rbd-config'
        try {
            $run = Test-VolumeBackup -Repository rbd:backups -SamplePercent 100 @ceph
            $run.UnitsTotal | Should -Be @(Get-VolumeBackup -Repository rbd:backups @ceph).Count
            # The only problems are the snapshots and bases earlier tests removed on purpose.
            $broken = @(Get-VolumeBackup -Repository rbd:backups @ceph | Where-Object Name -Like "pester-$tag-*" | Where-Object Name -Match '-(nosnap|legacy)$').Id
            $run.Issues.BackupId | Where-Object { $_ -notin $broken } | Should -BeNullOrEmpty
            $run.LastFullCoverageUtc | Should -Not -BeNullOrEmpty
        }
        finally {
            Remove-Item Env:BLOCKBACKUP_CONFIG_DIR
        }
    }

    It 'applies retention to a pool (Limit-VolumeBackup) chain-aware, and a policy backs up an RBD image into it' {
        $env:BLOCKBACKUP_CONFIG_DIR = Join-Path $TestDrive 'rbd-policy-config'
        try {
            $local = Join-Path $TestDrive 'rbd-policy.img'
            New-TestVolume -Path $local -MiB 8 -Seed 90
            $image = New-RbdImage -Name "pester-policy-$tag" -From $local
            New-BackupPolicy -Name "rbd-$tag" -RbdImage $image -Repository rbd:backups -CephConfig $conf -Schedule '0 2 * * *' -KeepLast 1 -MaxChainLength 2 -Verify | Out-Null
            $first = Invoke-BackupPolicy -Name "rbd-$tag" -ErrorAction Stop
            $first.Type | Should -Be 'Full'
            $first.Verified | Should -BeTrue
            Invoke-Rbd bench --io-type write --io-size 4K --io-total 64K $image | Out-Null
            $second = Invoke-BackupPolicy -Name "rbd-$tag" -ErrorAction Stop
            $second.Type | Should -Be 'Incremental'
            $second.Reason | Should -Match "incremental of $($first.BackupId)"
            @($second.Removed).Count | Should -Be 0 -Because 'KeepLast 1 keeps the incremental, and it needs its full'
            $third = Invoke-BackupPolicy -Name "rbd-$tag" -ErrorAction Stop
            $third.Type | Should -Be 'Full' -Because 'MaxChainLength 2'
            $third.Removed | Should -Be @($second.BackupId, $first.BackupId)
            $ofImage = Get-VolumeBackup -Repository rbd:backups @ceph | Where-Object Source -EQ $image
            $ofImage.Id | Should -Be @($third.BackupId)
            (Get-BackupPolicyStatus -Name "rbd-$tag").Health | Should -Be 'Healthy'
            $decisions = Limit-VolumeBackup -Repository rbd:backups -VolumeId $ofImage.VolumeId -KeepLast 1 -WhatIf @ceph
            ($decisions | Where-Object BackupId -EQ $third.BackupId).Action | Should -Be 'Keep'
        }
        finally {
            Get-VolumeBackup -Repository rbd:backups @ceph | Where-Object Name -Like "rbd-$tag-*" | Remove-VolumeBackup -Confirm:$false @ceph -ErrorAction SilentlyContinue
            Remove-BackupPolicy -Name "rbd-$tag" -Confirm:$false -ErrorAction SilentlyContinue
            Remove-Item Env:BLOCKBACKUP_CONFIG_DIR
        }
    }
}
