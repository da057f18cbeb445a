#Requires -Version 7.4
<#
.SYNOPSIS
    DSC v3 command resource BlockBackup/BackupPolicy (see BlockBackup.dsc.resource.json): reads the
    instance as JSON on stdin and runs the class resource BlockBackupPolicy's Get/Test/Set on it.
.DESCRIPTION
    get     the current state (with _exist)
    test    the current state with _inDesiredState
    set     makes it so, then prints the state
    whatif  what set would leave, checked as set checks it, changing nothing
    delete  removes the policy (the schedule entry stays: other policies may use it)
    Properties are the class resource's in camelCase; _exist: false stands for Ensure = Absent.
    The instance is checked against the manifest's own schema before anything is read or written:
    every property declared (DSC's _metadata aside), every value of its declared type and range.
    Exit codes (the manifest's exitCodes): 0 success, 1 the operation failed, 2 the instance is
    invalid (nothing was read or written).
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)]
    [ValidateSet('get', 'set', 'test', 'whatif', 'delete')]
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
    $script:exitCode = 1
    # DSC reads errors as JSON lines on stderr; the exit code says the operation failed.
    trap {
        [Console]::Error.WriteLine((@{ error = $_.Exception.Message } | ConvertTo-Json -Compress))
        exit $script:exitCode
    }

    $manifest = Get-Content -Raw -LiteralPath (Join-Path $PSScriptRoot 'BlockBackup.dsc.resource.json') | ConvertFrom-Json -AsHashtable
    $schema = $manifest.schema.embedded
    # DSC's canonical properties that the schema takes by reference, and the type each has there.
    $canonical = @{
        'https://aka.ms/dsc/schemas/v3/resource/properties/exist.json'          = @('boolean')
        'https://aka.ms/dsc/schemas/v3/resource/properties/inDesiredState.json' = @('boolean', 'null')
    }

    function Get-JsonKind([System.Text.Json.JsonElement] $Element) {
        switch ($Element.ValueKind) {
            'String' { 'string' }
            'Number' { $n = 0L; if ($Element.TryGetInt64([ref] $n)) { 'integer' } else { 'number' } }
            'True' { 'boolean' }
            'False' { 'boolean' }
            'Null' { 'null' }
            'Array' { 'array' }
            'Object' { 'object' }
            default { 'undefined' }
        }
    }

    # One JSON value as PowerShell has it for the class resource: string, string[], int, bool or $null.
    function ConvertFrom-JsonElement([System.Text.Json.JsonElement] $Element) {
        switch ($Element.ValueKind) {
            'String' { return $Element.GetString() }
            'Number' { return [int] $Element.GetInt64() }
            'True' { return $true }
            'False' { return $false }
            'Array' { return , [string[]] @($Element.EnumerateArray() | ForEach-Object { $_.GetString() }) }
            default { return $null }
        }
    }

    # The value of one property against its schema: type, items, enum, minimum and maximum. A
    # refusal names the property and what it takes, and is exit code 2 (invalid input).
    function Assert-Value([string] $Name, [System.Text.Json.JsonElement] $Element, [hashtable] $Rule) {
        $types = if ($Rule.'$ref') { $canonical[$Rule.'$ref'] } else { @($Rule.type) }
        $kind = Get-JsonKind $Element
        $shown = $Element.GetRawText()
        if ($kind -notin $types -and -not ($kind -eq 'integer' -and 'number' -in $types)) {
            $script:exitCode = 2
            $hint = if ($kind -eq 'string' -and $types -contains 'boolean') { ' (true or false, without quotes)' } elseif ($kind -eq 'string' -and $types -contains 'integer') { ' (a number, without quotes)' } else { '' }
            throw "Property '$Name': $shown is $(if ($kind -in 'integer', 'object', 'array') { 'an' } else { 'a' }) $kind; it takes $($types -join ' or ')$hint."
        }
        if ($kind -eq 'array' -and $Rule.items) {
            foreach ($item in $Element.EnumerateArray()) {
                $itemKind = Get-JsonKind $item
                if ($itemKind -notin @($Rule.items.type)) {
                    $script:exitCode = 2
                    throw "Property '$Name': the item $($item.GetRawText()) is a $itemKind; each item is a $(@($Rule.items.type) -join ' or ')."
                }
            }
        }
        if ($kind -eq 'null') {
            return
        }
        $value = ConvertFrom-JsonElement $Element
        if ($Rule.ContainsKey('enum') -and $value -cnotin @($Rule.enum | Where-Object { $null -ne $_ })) {
            $script:exitCode = 2
            throw "Property '${Name}': $shown is not one of $((@($Rule.enum | Where-Object { $null -ne $_ }) | ForEach-Object { "'$_'" }) -join ', ')."
        }
        if ($kind -eq 'integer' -and (($Rule.ContainsKey('minimum') -and $Element.GetInt64() -lt $Rule.minimum) -or ($Rule.ContainsKey('maximum') -and $Element.GetInt64() -gt $Rule.maximum))) {
            $script:exitCode = 2
            $range = if ($Rule.ContainsKey('maximum')) { "$($Rule.minimum) to $($Rule.maximum)" } else { "at least $($Rule.minimum)" }
            throw "Property '${Name}': $shown is out of range; it takes $range."
        }
    }

    # The instance, checked against the schema, as a table of the class resource's values.
    function Read-Instance([string] $Text) {
        $script:exitCode = 2
        try {
            $document = [System.Text.Json.JsonDocument]::Parse($Text)
        }
        catch {
            throw "The instance is not JSON: $($_.Exception.InnerException.Message ?? $_.Exception.Message)"
        }
        $root = $document.RootElement
        if ($root.ValueKind -ne 'Object') {
            throw "The instance is $(Get-JsonKind $root) JSON, not an object of BlockBackup/BackupPolicy's properties."
        }
        $instance = [ordered]@{}
        foreach ($property in $root.EnumerateObject()) {
            $name = $property.Name
            if ($instance.Contains($name)) {
                throw "Property '$name' is given twice."
            }
            if ($name -ceq '_metadata') {
                continue   # DSC's own (security context, run metadata): not a setting of the resource
            }
            $rule = $schema.properties[$name]
            if ($null -eq $rule -or -not $schema.properties.Keys.Where({ $_ -ceq $name })) {
                $hint = if ($name -eq 'ensure') { " Use _exist (true or false)." }
                elseif ($schema.properties.Keys.Where({ $_ -eq $name })) { " Property names are case-sensitive: '$($schema.properties.Keys.Where({ $_ -eq $name })[0])'." }
                else { " The properties are: $(($schema.properties.Keys | Sort-Object) -join ', ')." }
                throw "Unknown property '$name' for BlockBackup/BackupPolicy.$hint"
            }
            Assert-Value $name $property.Value $rule
            if (-not $rule.readOnly) {
                $instance[$name] = ConvertFrom-JsonElement $property.Value
            }
        }
        foreach ($required in $schema.required) {
            if ($null -eq $instance[$required]) {
                throw "The instance has no '$required': the policy's name is its key."
            }
        }
        $script:exitCode = 1
        return $instance
    }

    $text = if ($lines.Count -gt 0) { $lines -join "`n" } else { [Console]::In.ReadToEnd() }
    $desired = Read-Instance $text

    Import-Module (Join-Path $PSScriptRoot 'BlockBackup.psd1')
    $dsc = (Get-Module BlockBackup).NestedModules | Where-Object Name -EQ 'BlockBackup.Dsc'

    # The class resource, built from the checked instance (camelCase names are the class's).
    $resource = & $dsc {
        param($instance)
        $r = [BlockBackupPolicy]::new()
        foreach ($name in $instance.Keys) {
            if ($name -ceq '_exist') {
                $r.Ensure = if ($instance[$name]) { 'Present' } else { 'Absent' }
            }
            elseif ($null -ne $instance[$name]) {
                $r.($name.Substring(0, 1).ToUpperInvariant() + $name.Substring(1)) = $instance[$name]
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
                if ($null -ne $value -and "$value" -ne '') {
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
        'whatif' { ConvertTo-Instance $resource.WhatIf() }
        'delete' { $resource.Ensure = 'Absent'; $resource.Set() }
    }
}
