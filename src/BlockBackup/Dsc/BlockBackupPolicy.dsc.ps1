#Requires -Version 7.4
<#
.SYNOPSIS
    DSC v3 command resource BlockBackup/BackupPolicy (see BlockBackup.dsc.resource.json): reads the
    instance as JSON on stdin and runs the class resource BlockBackupPolicy's Get/Test/Set on it.
.DESCRIPTION
    get     the current state (with _exist)
    test    the current state with _inDesiredState
    set     makes it so, then prints the state
    delete  removes the policy (the schedule entry stays: other policies may use it)
    Properties are the class resource's in camelCase; _exist: false stands for Ensure = Absent.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)]
    [ValidateSet('get', 'set', 'test', 'delete')]
    [string] $Operation,

    [Parameter(ValueFromPipeline)]
    [string[]] $InputJson
)

begin {
    $lines = [System.Collections.Generic.List[string]]::new()
}

process {
    foreach ($line in $InputJson) { $lines.Add($line) }
}

end {
    $ErrorActionPreference = 'Stop'
    # DSC reads errors as JSON lines on stderr; the exit code says the operation failed.
    trap {
        [Console]::Error.WriteLine((@{ error = $_.Exception.Message } | ConvertTo-Json -Compress))
        exit 1
    }

    Import-Module (Join-Path $PSScriptRoot 'BlockBackup.psd1')
    $desired = ($lines -join "`n") | ConvertFrom-Json
    if (-not $desired.name) { throw "The instance has no 'name': the policy's name is its key." }
    $dsc = (Get-Module BlockBackup).NestedModules | Where-Object Name -EQ 'BlockBackup.Dsc'

    # The class resource, built from the instance: each JSON property that the class has.
    $resource = & $dsc {
        param($instance)
        $r = [BlockBackupPolicy]::new()
        foreach ($property in $instance.PSObject.Properties) {
            if ($property.Name -eq '_exist') {
                $r.Ensure = if ($property.Value) { 'Present' } else { 'Absent' }
            }
            elseif ($property.Name -notin '_inDesiredState', 'reasons' -and $r.PSObject.Properties[$property.Name]) {
                $r.($r.PSObject.Properties[$property.Name].Name) = $property.Value
            }
            elseif ($property.Name -notlike '_*') {
                throw "Unknown property '$($property.Name)' for BlockBackup/BackupPolicy."
            }
        }
        $r
    } $desired

    function ConvertTo-Instance {
        param($State, [switch] $WithDesiredState)
        $out = [ordered]@{ name = $State.Name; _exist = ([string]$State.Ensure -eq 'Present') }
        if ($out._exist) {
            foreach ($setting in 'Path', 'RbdImage', 'Repository', 'Schedule', 'TimeZone', 'FullEvery', 'MaxChainLength', 'KeepLast', 'KeepHourly',
                'KeepDaily', 'KeepWeekly', 'KeepMonthly', 'KeepYearly', 'KeepWithin', 'Compression', 'Verify', 'VerifyPercent', 'RetainScope', 'ScheduleEveryMinutes', 'ScheduleDestination') {
                $value = $State.$setting
                if ($null -ne $value -and "$value" -ne '' -and -not ($value -is [int] -and $value -eq 0)) {
                    $out[$setting.Substring(0, 1).ToLowerInvariant() + $setting.Substring(1)] = $value
                }
            }
        }
        if ($WithDesiredState) {
            $out._inDesiredState = @($State.Reasons).Count -eq 0
            $out.reasons = @($State.Reasons | ForEach-Object { [ordered]@{ code = $_.Code; phrase = $_.Phrase } })
        }
        $out | ConvertTo-Json -Compress -Depth 4
    }

    switch ($Operation) {
        'get' { ConvertTo-Instance $resource.Get() }
        'test' { ConvertTo-Instance $resource.Get() -WithDesiredState }
        'set' { $resource.Set(); ConvertTo-Instance $resource.Get() }
        'delete' { $resource.Ensure = 'Absent'; $resource.Set() }
    }
}
