# Shared by the Pester files that test the configuration directory's trust checks: dot-source it in
# BeforeAll (after TestHelpers.ps1). The tests run as root, as CI does; the hostile user is nobody
# (their Describe blocks are skipped where that cannot be: not Linux, not root, no runuser).

# Runs a shell script as nobody; its failure fails the test (the setup must do what it says).
function script:Invoke-AsNobody {
    param([string] $Script)
    $output = & runuser -u nobody -- /bin/sh -c $Script 2>&1
    if ($LASTEXITCODE -ne 0) { throw "as nobody: $Script`n$output" }
}

# The refusal: ConfigurationNotTrusted naming the path, what is wrong and the fix.
function script:Assert-NotTrusted {
    param($ErrorRecord, [string] $Path, [string] $What, [string] $Fix)
    $ErrorRecord | Should -Not -BeNullOrEmpty
    $ErrorRecord.FullyQualifiedErrorId | Should -BeLike 'ConfigurationNotTrusted,*'
    $ErrorRecord.Exception.Message | Should -Match ([regex]::Escape("'$Path'"))
    $ErrorRecord.Exception.Message | Should -Match $What
    $ErrorRecord.Exception.Message | Should -Match ([regex]::Escape($Fix))
}
