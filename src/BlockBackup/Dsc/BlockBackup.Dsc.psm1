# BlockBackup's DSC resource: a backup policy and the scheduler entry that runs it.
# A class-based resource (PSDesiredStateConfiguration 2, Invoke-DscResource, Machine
# Configuration) and, through BlockBackupPolicy.dsc.ps1, a DSC v3 command resource share the
# logic below. Test() is about configuration only: the stored policy equals the declared one and
# the schedule entry is registered. Whether backups are fresh is monitoring
# (Get-BackupPolicyStatus), not desired state.

enum Ensure {
    Absent
    Present
}

# The dsccommunity convention for explaining why Test() is false.
class BlockBackupReason {
    [DscProperty()] [string] $Code
    [DscProperty()] [string] $Phrase
}

[DscResource()]
class BlockBackupPolicy {
    [DscProperty(Key)] [string] $Name
    [DscProperty()] [Ensure] $Ensure = [Ensure]::Present
    [DscProperty()] [string[]] $Path
    [DscProperty()] [string[]] $RbdImage
    [DscProperty()] [string] $Repository
    [DscProperty()] [string] $Schedule
    [DscProperty()] [string] $TimeZone
    # TimeSpans as strings ('7.00:00:00'): DSC and JSON carry them as text.
    [DscProperty()] [string] $FullEvery
    # The numbers and Verify are nullable: $null (absent in DSC v3) is "not managed", so 0 and
    # $false can be declared (KeepDaily = 0: no daily rule; MaxChainLength/VerifyPercent = 0: none).
    [DscProperty()] [Nullable[int]] $MaxChainLength
    [DscProperty()] [Nullable[int]] $KeepLast
    [DscProperty()] [Nullable[int]] $KeepHourly
    [DscProperty()] [Nullable[int]] $KeepDaily
    [DscProperty()] [Nullable[int]] $KeepWeekly
    [DscProperty()] [Nullable[int]] $KeepMonthly
    [DscProperty()] [Nullable[int]] $KeepYearly
    [DscProperty()] [string] $KeepWithin
    [DscProperty()] [string] $Compression
    [DscProperty()] [Nullable[bool]] $Verify
    [DscProperty()] [Nullable[int]] $VerifyPercent
    [DscProperty()] [string] $RetainScope
    # How often the node's scheduler entry looks for due policies (Register-BackupSchedule -EveryMinutes).
    [DscProperty()] [int] $ScheduleEveryMinutes = 5
    # Write the scheduler entry's files here instead of the system's place (Register-BackupSchedule -Destination): for review, packaging or tests.
    [DscProperty()] [string] $ScheduleDestination
    [DscProperty(NotConfigurable)] [BlockBackupReason[]] $Reasons

    # The policy settings this resource manages, in the order the cmdlets take them.
    hidden static [string[]] $Settings = @(
        'Path', 'RbdImage', 'Repository', 'Schedule', 'TimeZone', 'FullEvery', 'MaxChainLength',
        'KeepLast', 'KeepHourly', 'KeepDaily', 'KeepWeekly', 'KeepMonthly', 'KeepYearly', 'KeepWithin',
        'Compression', 'Verify', 'VerifyPercent', 'RetainScope')

    [BlockBackupPolicy] Get() {
        $this.AssertLocations()
        $current = [BlockBackupPolicy]::new()
        $current.Name = $this.Name
        $current.ScheduleEveryMinutes = $this.ScheduleEveryMinutes
        $current.ScheduleDestination = $this.ScheduleDestination
        $stored = [BlockBackupPolicy]::Read($this.Name)
        if ($null -eq $stored) {
            $current.Ensure = [Ensure]::Absent
        }
        else {
            $current.Ensure = [Ensure]::Present
            foreach ($setting in [BlockBackupPolicy]::Settings) {
                $current.$setting = $stored[$setting]
            }
        }
        $current.Reasons = $this.Compare($current)
        return $current
    }

    [bool] Test() {
        return $this.Get().Reasons.Count -eq 0
    }

    [void] Set() {
        $current = $this.Get()
        # Everything is checked before anything is written: the policy's settings by the cmdlet
        # that writes it (before it writes), the scheduler entry's interval here, so that a
        # refused interval never leaves a policy written without its entry.
        $this.AssertScheduleInterval()
        if ($this.Ensure -eq [Ensure]::Absent) {
            if ($current.Ensure -eq [Ensure]::Present) {
                BlockBackup\Remove-BackupPolicy -Name $this.Name -Confirm:$false -ErrorAction Stop
            }
            return
        }

        $parameters = $this.Declared()
        if ($current.Ensure -eq [Ensure]::Absent) {
            BlockBackup\New-BackupPolicy -Name $this.Name @parameters -ErrorAction Stop | Out-Null
        }
        elseif (@($current.Reasons | Where-Object Code -Like 'BlockBackupPolicy:*:Setting').Count -gt 0) {
            BlockBackup\Set-BackupPolicy -Name $this.Name @parameters -ErrorAction Stop | Out-Null
        }
        $where = $this.ScheduleLocation()
        if (-not (BlockBackup\Get-BackupSchedule -EveryMinutes $this.ScheduleEveryMinutes @where).IsCurrent) {
            BlockBackup\Register-BackupSchedule -EveryMinutes $this.ScheduleEveryMinutes -Confirm:$false -ErrorAction Stop @where
        }
    }

    # What Set() would do, without doing it: every value checked as Set() checks it (the policy
    # cmdlet runs with -WhatIf in a hostless PowerShell, whose what-if message goes nowhere, so
    # DSC's stdout holds only the state), then the state Set() would leave.
    [BlockBackupPolicy] WhatIf() {
        $current = $this.Get()
        $this.AssertScheduleInterval()
        $expected = [BlockBackupPolicy]::new()
        $expected.Name = $this.Name
        $expected.Ensure = $this.Ensure
        $expected.ScheduleEveryMinutes = $this.ScheduleEveryMinutes
        $expected.ScheduleDestination = $this.ScheduleDestination
        if ($this.Ensure -eq [Ensure]::Absent) {
            return $expected
        }
        $parameters = $this.Declared()
        $verb = if ($current.Ensure -eq [Ensure]::Absent) { 'New' } else { 'Set' }
        $check = [powershell]::Create()
        try {
            $null = $check.AddCommand('Import-Module').AddParameter('Name', (Get-Module BlockBackup).Path).AddStatement()
            $null = $check.AddCommand("BlockBackup\$verb-BackupPolicy").AddParameter('Name', $this.Name).AddParameters($parameters).AddParameter('WhatIf')
            $null = $check.Invoke()
            if ($check.Streams.Error.Count -gt 0) {
                throw $check.Streams.Error[0]
            }
        }
        finally {
            $check.Dispose()
        }
        foreach ($setting in [BlockBackupPolicy]::Settings) {
            $expected.$setting = if ($parameters.ContainsKey($setting)) { $this.$setting } else { $current.$setting }
        }
        return $expected
    }

    # The scheduler entry's interval, as Register-BackupSchedule would refuse it (the engine's own rule).
    hidden [void] AssertScheduleInterval() {
        $entry = ('BlockBackup.Engine.Scheduling.ScheduleEntry' -as [type])::new()
        $entry.PwshPath = $entry.ModuleManifest = [System.IO.Path]::GetFullPath('/')
        $entry.EveryMinutes = $this.ScheduleEveryMinutes
        try {
            $entry.Validate()
        }
        catch {
            throw "Property 'scheduleEveryMinutes': $($_.Exception.InnerException.Message ?? $_.Exception.Message)"
        }
    }

    # A DSC resource runs in whatever directory its host chose (the module's folder for DSC v3),
    # so a relative path would name a place nobody meant, and a bare name that no registration
    # has would become a directory of that name there: both are refused before anything is read
    # or written.
    hidden [void] AssertLocations() {
        foreach ($volume in @($this.Path)) {
            if ($volume -and -not [System.IO.Path]::IsPathFullyQualified($volume)) {
                throw "Property 'path': '$volume' is not an absolute path; DSC resolves nothing against a current directory, so give each volume's full path."
            }
        }
        $where = $this.Repository
        if (-not $where -or $where -match '^[A-Za-z0-9]+://' -or $where -like 'rbd:*' -or [System.IO.Path]::IsPathFullyQualified($where)) {
            return
        }
        # (The engine's type by name: a class is parsed before the module's assemblies are loaded.)
        if (('BlockBackup.Engine.Configuration.RepositoryRegistry' -as [type])::IsValidName($where)) {
            if (-not (BlockBackup\Get-BackupRepository -Name $where -ErrorAction SilentlyContinue)) {
                throw "Property 'repository': no repository '$where' is registered on this node (Get-BackupRepository lists them); register it first, or give an absolute path, s3://, swift:// or rbd: location."
            }
            return
        }
        throw "Property 'repository': '$where' is a relative path; DSC resolves nothing against a current directory, so give an absolute path, an s3://, swift:// or rbd: location, or a registered repository's name."
    }

    hidden [hashtable] ScheduleLocation() {
        $where = @{}
        if ($this.ScheduleDestination) {
            $where.Destination = $this.ScheduleDestination
        }
        return $where
    }

    # The declared settings as cmdlet parameters: a setting left $null (or empty) is not managed.
    hidden [hashtable] Declared() {
        $parameters = @{}
        foreach ($setting in [BlockBackupPolicy]::Settings) {
            $value = $this.$setting
            if ($null -eq $value -or ($value -is [string] -and $value -eq '') -or ($value -is [array] -and $value.Count -eq 0)) {
                continue
            }
            if ($setting -in 'FullEvery', 'KeepWithin') {
                $value = [timespan]::Parse($value, [cultureinfo]::InvariantCulture)
            }
            if ($setting -eq 'Verify') {
                $value = [switch]$value
            }
            $parameters[$setting] = $value
        }
        return $parameters
    }

    hidden [BlockBackupReason[]] Compare([BlockBackupPolicy] $current) {
        $found = [System.Collections.Generic.List[BlockBackupReason]]::new()
        $prefix = "BlockBackupPolicy:$($this.Name)"
        if ($current.Ensure -ne $this.Ensure) {
            $found.Add([BlockBackupReason]@{ Code = "${prefix}:Ensure"; Phrase = "The policy should be $($this.Ensure) but is $($current.Ensure)." })
            return $found.ToArray()
        }
        if ($this.Ensure -eq [Ensure]::Absent) {
            return $found.ToArray()
        }
        $declared = $this.Declared()
        foreach ($setting in $declared.Keys | Sort-Object) {
            $want = [BlockBackupPolicy]::Text($declared[$setting])
            $have = [BlockBackupPolicy]::Text($current.$setting)
            if ($want -cne $have) {
                $found.Add([BlockBackupReason]@{ Code = "${prefix}:${setting}:Setting"; Phrase = "$setting should be '$want' but is '$have'." })
            }
        }
        $where = $this.ScheduleLocation()
        $entry = BlockBackup\Get-BackupSchedule -EveryMinutes $this.ScheduleEveryMinutes @where
        if (-not $entry.IsCurrent) {
            $state = if ($entry.IsRegistered) { 'registered with other settings' } else { 'not registered' }
            $found.Add([BlockBackupReason]@{ Code = "${prefix}:Schedule:Registration"; Phrase = "The $($entry.Kind) entry that runs due policies every $(if ($this.ScheduleEveryMinutes -eq 1) { minute } else { "$($this.ScheduleEveryMinutes) minutes" }) is $state." })
        }
        return $found.ToArray()
    }

    # One comparable text per value: arrays joined, TimeSpans invariant, switches as booleans.
    hidden static [string] Text($value) {
        if ($null -eq $value) { return '' }
        if ($value -is [System.Management.Automation.SwitchParameter]) { return ([bool]$value).ToString() }
        if ($value -is [timespan]) { return $value.ToString('c', [cultureinfo]::InvariantCulture) }
        if ($value -is [array]) { return (@($value | ForEach-Object { [BlockBackupPolicy]::Text($_) }) -join "`n") }
        return [string]$value
    }

    # The stored policy as a table of settings, or $null when there is none. Only a missing policy
    # is absent: a name that is not a policy name, an untrusted configuration or a damaged file is
    # an error, never something for Set() to create or leave alone.
    hidden static [hashtable] Read([string] $policyName) {
        $failed = $null
        $policy = BlockBackup\Get-BackupPolicy -Name $policyName -ErrorAction SilentlyContinue -ErrorVariable failed | Where-Object Name -EQ $policyName | Select-Object -First 1
        $errors = @($failed | Where-Object { $_.FullyQualifiedErrorId -notlike 'BackupPolicyNotFound,*' })
        if ($errors.Count -gt 0) {
            throw $errors[0]
        }
        if ($null -eq $policy) {
            return $null
        }
        $table = @{}
        foreach ($setting in [BlockBackupPolicy]::Settings) {
            $table[$setting] = [BlockBackupPolicy]::Setting($policy, $setting)
        }
        return $table
    }

    # A setting of a policy object, as Get-BackupPolicy emits it.
    hidden static [object] Setting($policy, [string] $setting) {
        $value = $policy.$setting
        if ($setting -in 'MaxChainLength', 'VerifyPercent' -and $null -eq $value) {
            return 0   # none, as the resource declares it
        }
        if ($setting -in 'FullEvery', 'KeepWithin' -and $null -ne $value) {
            return ([timespan]$value).ToString('c', [cultureinfo]::InvariantCulture)
        }
        return $value
    }
}
