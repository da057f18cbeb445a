#Requires -Version 7.4
#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.0.0' }
<#
    Registered repositories: Register-, Get-, Unregister-BackupRepository over the node's registry
    (BLOCKBACKUP_CONFIG_DIR in $TestDrive), the engine's RepositoryRegistry called directly
    (GetSecret from the stored file or the environment), secrets kept out of every output and
    file but their own (mode 0600), damaged or hostile registration files, -Name completion, and
    the help's and README's examples run as written.
#>

BeforeAll {
    . (Join-Path $PSScriptRoot 'TestHelpers.ps1')
    . (Join-Path $PSScriptRoot 'ConfigurationTrustHelpers.ps1')
    $script:savedConfig = $env:BLOCKBACKUP_CONFIG_DIR

    # A fresh configuration directory for each test that asks for one.
    function script:Use-Config {
        param([string] $Name)
        $dir = Join-Path $TestDrive $Name
        $env:BLOCKBACKUP_CONFIG_DIR = $dir
        $script:registry = [BlockBackup.Engine.Configuration.RepositoryRegistry]::new()
        $script:repos = Join-Path $dir 'repositories'
        $dir
    }

    function script:New-Credential {
        param([string] $User, [string] $Secret)
        [pscredential]::new($User, (ConvertTo-SecureString -String $Secret -AsPlainText -Force))
    }

    # The BackupException a call into the engine throws (PowerShell wraps it in a MethodInvocationException).
    function script:Get-EngineError {
        param([scriptblock] $Call)
        try {
            & $Call | Out-Null
        }
        catch {
            $ex = $_.Exception
            while ($ex -and $ex -isnot [BlockBackup.Engine.Errors.BackupException]) { $ex = $ex.InnerException }
            return $ex
        }
        throw 'The call did not fail.'
    }

    function script:Get-Tree {
        param([string] $Path)
        if (-not (Test-Path -LiteralPath $Path)) { return @() }
        Get-ChildItem -LiteralPath $Path -Recurse -Force -File | ForEach-Object { "$($_.FullName) $($_.Length) $($_.LastWriteTimeUtc.Ticks) $((Get-FileHash -LiteralPath $_.FullName).Hash)" }
    }

    $script:secret = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY-9f3b'
    $script:s3 = @{ Uri = 's3://backups/node1'; Endpoint = 'https://s3.example.com' }
}

AfterAll {
    if ($null -eq $savedConfig) { Remove-Item Env:BLOCKBACKUP_CONFIG_DIR -ErrorAction SilentlyContinue } else { $env:BLOCKBACKUP_CONFIG_DIR = $savedConfig }
    Remove-Item Env:BB_TEST_S3_SECRET -ErrorAction SilentlyContinue
    Remove-Module BlockBackup -ErrorAction SilentlyContinue
}

Describe 'Register-, Get-, Unregister-BackupRepository' {
    It 'registers, reads and unregisters an S3 repository, as plain JSON beside a separate secret file' {
        $config = Use-Config 'roundtrip'
        $registered = Register-BackupRepository -Name offsite @s3 -Region us-east-1 -AvailabilityZone az1 -Credential (New-Credential AKIAEXAMPLE $secret) -PassThru
        $registered | Should -BeOfType ([BlockBackup.Engine.Configuration.RegisteredRepository])
        $registered.CredentialSource | Should -Be 'Stored'
        $registered.RegisteredUtc | Should -BeGreaterThan ([datetimeoffset]::UtcNow.AddMinutes(-5))

        $got = Get-BackupRepository -Name offsite
        $got.Name | Should -Be 'offsite'
        $got.Uri | Should -Be 's3://backups/node1'
        $got.Endpoint | Should -Be 'https://s3.example.com'
        $got.UserName | Should -Be 'AKIAEXAMPLE'
        $got.Region | Should -Be 'us-east-1'
        $got.AvailabilityZone | Should -Be 'az1'
        $got.SecretEnvironmentVariable | Should -BeNullOrEmpty
        $got.RegisteredUtc | Should -Be $registered.RegisteredUtc

        $json = Get-Content -Raw -LiteralPath (Join-Path $repos 'offsite.json') | ConvertFrom-Json
        $json.uri | Should -Be 's3://backups/node1'
        $json.credentialSource | Should -Be 'Stored'
        Test-Path -LiteralPath (Join-Path $repos 'offsite.secret') | Should -BeTrue
        $registry.GetSecret($got) | Should -BeExactly $secret
        (Get-BackupRepository OFFSITE).Name | Should -Be 'offsite' -Because 'names are case-insensitive'

        Unregister-BackupRepository -Name offsite
        Get-ChildItem -LiteralPath $repos -Force | Should -BeNullOrEmpty
        Get-BackupRepository -Name offsite -ErrorAction SilentlyContinue -ErrorVariable err | Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -BeLike 'RepositoryNotRegistered,*'
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        Unregister-BackupRepository -Name offsite -ErrorAction SilentlyContinue -ErrorVariable err
        $err[0].FullyQualifiedErrorId | Should -BeLike 'RepositoryNotRegistered,*'
        $config | Should -Exist
    }

    It 'gives a directory (resolved against the current location) and an RBD pool a short name too' {
        Use-Config 'locations' | Out-Null
        Push-Location -LiteralPath $TestDrive
        try {
            Register-BackupRepository -Name local -Uri ./backups
        }
        finally {
            Pop-Location
        }
        Register-BackupRepository -Name pool rbd:backups
        (Get-BackupRepository local).Uri | Should -Be (Join-Path $TestDrive 'backups')
        (Get-BackupRepository pool).Uri | Should -Be 'rbd:backups'
        (Get-BackupRepository pool).CredentialSource | Should -Be 'None'
        $registry.GetSecret((Get-BackupRepository pool)) | Should -BeNullOrEmpty
    }

    It 'gets by wildcard, sorted, and reports a literal name that is not registered without stopping' {
        Use-Config 'wildcards' | Out-Null
        foreach ($name in 'off-b', 'off-a', 'test-1', 'Test-2') {
            Register-BackupRepository -Name $name -Uri (Join-Path $TestDrive $name)
        }
        (Get-BackupRepository).Name | Should -Be @('off-a', 'off-b', 'test-1', 'Test-2')
        (Get-BackupRepository -Name off*).Name | Should -Be @('off-a', 'off-b')
        (Get-BackupRepository -Name TEST-?).Name | Should -Be @('test-1', 'Test-2')
        (Get-BackupRepository -Name 'nothing*') | Should -BeNullOrEmpty
        $found = Get-BackupRepository -Name off-a, missing, test-1 -ErrorAction SilentlyContinue -ErrorVariable err
        $found.Name | Should -Be @('off-a', 'test-1')
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'RepositoryNotRegistered,*'
        $err[0].Exception.Message | Should -Match "'missing'"

        Get-BackupRepository -Name test-* | Unregister-BackupRepository
        (Get-BackupRepository).Name | Should -Be @('off-a', 'off-b')
        $removed = 'off-a', 'off-b' | ForEach-Object { [pscustomobject]@{ Name = $_ } } | Unregister-BackupRepository -PassThru
        $removed.Name | Should -Be @('off-a', 'off-b')
        Get-BackupRepository | Should -BeNullOrEmpty
    }

    It '-WhatIf changes nothing: a new registration, a replacement, a removal' {
        Use-Config 'whatif' | Out-Null
        Register-BackupRepository -Name new @s3 -Credential (New-Credential AKIA1 $secret) -WhatIf
        Test-Path -LiteralPath $repos | Should -BeFalse

        Register-BackupRepository -Name kept @s3 -Credential (New-Credential AKIA1 $secret)
        $before = Get-Tree $repos
        $before.Count | Should -Be 2
        Register-BackupRepository -Name kept @s3 -Credential (New-Credential AKIA2 'another-secret') -Force -WhatIf
        Register-BackupRepository -Name kept -Uri (Join-Path $TestDrive 'x') -Force -WhatIf
        Unregister-BackupRepository -Name kept -WhatIf
        Get-BackupRepository | Unregister-BackupRepository -WhatIf
        Get-Tree $repos | Should -Be $before
        (Get-BackupRepository kept).UserName | Should -Be 'AKIA1'
    }

    It 'refuses an existing name without -Force (in any letter case) and replaces it with -Force' {
        Use-Config 'duplicate' | Out-Null
        Register-BackupRepository -Name offsite @s3 -Credential (New-Credential AKIA1 $secret)
        { Register-BackupRepository -Name offsite @s3 -Credential (New-Credential AKIA2 'x') -ErrorAction Stop } | Should -Throw -ErrorId 'RepositoryAlreadyRegistered*'
        { Register-BackupRepository -Name OffSite -Uri (Join-Path $TestDrive 'd') -ErrorAction Stop } | Should -Throw -ErrorId 'RepositoryAlreadyRegistered*'
        (Get-BackupRepository offsite).UserName | Should -Be 'AKIA1'
        $registry.GetSecret((Get-BackupRepository offsite)) | Should -BeExactly $secret

        Register-BackupRepository -Name offsite @s3 -Credential (New-Credential AKIA2 'second-secret') -Force
        (Get-BackupRepository offsite).UserName | Should -Be 'AKIA2'
        $registry.GetSecret((Get-BackupRepository offsite)) | Should -BeExactly 'second-secret'

        # From a stored secret to the environment: the stored secret goes.
        Register-BackupRepository -Name offsite @s3 -UserName AKIA3 -SecretEnvironmentVariable BB_TEST_S3_SECRET -Force
        Test-Path -LiteralPath (Join-Path $repos 'offsite.secret') | Should -BeFalse
        # Another letter case replaces it under the new name.
        Register-BackupRepository -Name OFFSITE -Uri (Join-Path $TestDrive 'd') -Force
        (Get-ChildItem -LiteralPath $repos).Name | Should -Be 'OFFSITE.json'
    }

    It 'refuses a second name for the same location and endpoint, naming the first (issue 18, item 12)' {
        Use-Config 'same-location' | Out-Null
        Register-BackupRepository -Name offsite @s3 -Credential (New-Credential AKIA1 $secret)
        $before = Get-Tree $repos
        foreach ($same in @(
                @{ Uri = 's3://backups/node1'; Endpoint = 'https://s3.example.com' }
                @{ Uri = 'S3://backups/node1/'; Endpoint = 'HTTPS://S3.example.com:443/' })) {
            $err = { Register-BackupRepository -Name second @same -Credential (New-Credential AKIA2 'x') -ErrorAction Stop } | Should -Throw -PassThru
            $err.FullyQualifiedErrorId | Should -BeLike 'RepositoryLocationAlreadyRegistered,*'
            $err.Exception.Message | Should -BeLike "*registered already as 'offsite'*offsite.json*"
            # -WhatIf says so too, rather than that it would register.
            { Register-BackupRepository -Name second @same -Credential (New-Credential AKIA2 'x') -WhatIf -ErrorAction Stop } | Should -Throw -ErrorId 'RepositoryLocationAlreadyRegistered*'
        }
        $dir = Join-Path $TestDrive 'same-dir'
        Register-BackupRepository -Name local -Uri $dir
        { Register-BackupRepository -Name local2 -Uri "$dir/" -ErrorAction Stop } | Should -Throw -ErrorId 'RepositoryLocationAlreadyRegistered*'
        (Get-BackupRepository).Name | Should -Be @('local', 'offsite')

        # Another prefix, bucket or endpoint is another location; the same name is replaced with -Force as before.
        Register-BackupRepository -Name other-prefix -Uri s3://backups/node2 -Endpoint https://s3.example.com -Credential (New-Credential AKIA2 'x')
        Register-BackupRepository -Name other-endpoint -Uri s3://backups/node1 -Endpoint https://s3.other.example.com -Credential (New-Credential AKIA2 'x')
        Register-BackupRepository -Name offsite @s3 -Credential (New-Credential AKIA3 'y') -Force
        (Get-BackupRepository offsite).UserName | Should -Be 'AKIA3'

        # A typed URL that two registrations (at two endpoints) name is refused, naming both, rather than one picked silently.
        $err = { Get-VolumeBackup -Repository s3://backups/node1 -ErrorAction Stop } | Should -Throw -PassThru
        $err.FullyQualifiedErrorId | Should -BeLike 'RepositoryUriAmbiguous,*'
        $err.Exception.Message | Should -BeLike "*'offsite' (endpoint https://s3.example.com)*'other-endpoint' (endpoint https://s3.other.example.com)*"
    }

    It 'refuses a location inside a repository''s .blockbackup bookkeeping, registered or typed (issue 18, item 10): <Uri>' -ForEach @(
        @{ Uri = 's3://backups/.blockbackup' }
        @{ Uri = 's3://backups/h/.blockbackup/locks' }
        @{ Uri = 'swift://backups/.BlockBackup/locks/volume-0b0b0b0b-0000-4000-8000-000000000001' }
        @{ Uri = 'DIR/.blockbackup/locks' }
        @{ Uri = 'DIR/repo/.blockbackup' }) {
        Use-Config "nested-$([guid]::NewGuid())" | Out-Null
        $location = $Uri -replace '^DIR', $TestDrive
        $options = if ($location -like '*://*') { @{ Endpoint = 'https://s3.example.com'; UserName = 'u'; SecretEnvironmentVariable = 'V' } } else { @{} }
        $err = { Register-BackupRepository -Name nested -Uri $location @options -ErrorAction Stop } | Should -Throw -PassThru
        $err.FullyQualifiedErrorId | Should -BeLike 'InvalidRepositoryUri,*'
        $err.Exception.Message | Should -BeLike '*.blockbackup*bookkeeping*'
        Test-Path -LiteralPath $repos | Should -BeFalse
        $typed = { Get-VolumeBackup -Repository $location -ErrorAction Stop } | Should -Throw -PassThru
        $typed.FullyQualifiedErrorId | Should -BeLike 'InvalidRepository,*'
        $typed.Exception.Message | Should -BeLike '*.blockbackup*bookkeeping*'
    }

    It 'accepts a directory merely named .blockbackup, but not one inside a registered repository''s bookkeeping' {
        Use-Config 'dot-blockbackup' | Out-Null
        $dir = Join-Path $TestDrive '.blockbackup/backups'
        Register-BackupRepository -Name home -Uri $dir
        (Get-BackupRepository home).Uri | Should -Be $dir
        $err = { Register-BackupRepository -Name inner -Uri (Join-Path $dir '.blockbackup/other') -ErrorAction Stop } | Should -Throw -PassThru
        $err.FullyQualifiedErrorId | Should -BeLike 'InvalidRepositoryUri,*'
        $err.Exception.Message | Should -BeLike "*inside the bookkeeping of registered repository 'home'*"
    }

    It 'refuses typed URLs exactly as registration does (issue 18, finding 15): <Case>' -ForEach @(
        @{ Case = 's3://..'; Uri = 's3://..' }
        @{ Case = 'swift://..'; Uri = 'swift://..' }
        @{ Case = 'swift://.'; Uri = 'swift://./x' }
        @{ Case = 'a one-letter bucket'; Uri = 's3://a' }
        @{ Case = 'a 900-character prefix'; Uri = 's3://backups/' + ('p' * 900) }
        @{ Case = 'a dot-dot prefix'; Uri = 's3://backups/a/../b' }) {
        Use-Config "typed-$([guid]::NewGuid())" | Out-Null
        { Register-BackupRepository -Name r -Uri $Uri -Endpoint 'https://s3.example.com' -UserName u -SecretEnvironmentVariable V -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidRepositoryUri*'
        # No connection is needed to refuse it: nothing is sent anywhere.
        $err = { Get-VolumeBackup -Repository $Uri -ErrorAction Stop } | Should -Throw -PassThru
        $err.FullyQualifiedErrorId | Should -BeLike 'InvalidRepository,*'
    }

    It 'refuses the name <Name> (InvalidRepositoryName) and writes nothing' -ForEach @(
        @{ Name = '../escape' }, @{ Name = 'a/b' }, @{ Name = 'a\b' }, @{ Name = 's3:offsite' }, @{ Name = '.hidden' },
        @{ Name = 'with space' }, @{ Name = 'nul' }, @{ Name = 'COM1.backups' }, @{ Name = 'x' * 65 }, @{ Name = 'dé' }) {
        Use-Config "badname-$([guid]::NewGuid())" | Out-Null
        { Register-BackupRepository -Name $Name -Uri (Join-Path $TestDrive 'd') -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidRepositoryName*'
        Test-Path -LiteralPath $repos | Should -BeFalse
        [BlockBackup.Engine.Configuration.RepositoryRegistry]::IsValidName($Name) | Should -BeFalse
        $registry.TryGet($Name) | Should -BeNullOrEmpty
    }

    It 'accepts names of letters, digits, -, _ and .' {
        foreach ($name in 'offsite', 'dc2-swift', 'a_b.c', '0', '-x', 'node1.s3') {
            [BlockBackup.Engine.Configuration.RepositoryRegistry]::IsValidName($name) | Should -BeTrue -Because $name
        }
    }

    It 'refuses what cannot be used: <Case>' -ForEach @(
        @{ Case = 'no endpoint'; Arguments = @{ Uri = 's3://bk1/p' }; Id = 'RepositoryEndpointRequired' }
        @{ Case = 'no credential'; Arguments = @{ Uri = 's3://bk1'; Endpoint = 'https://s3.example.com' }; Id = 'RepositoryCredentialRequired' }
        @{ Case = 'credential in the endpoint'; Arguments = @{ Uri = 's3://bk1'; Endpoint = 'https://AKIA:topsecret@s3.example.com'; UserName = 'u'; SecretEnvironmentVariable = 'V' }; Id = 'InvalidRepositoryEndpoint' }
        @{ Case = 'endpoint not http'; Arguments = @{ Uri = 's3://bk1'; Endpoint = 'ftp://s3.example.com'; UserName = 'u'; SecretEnvironmentVariable = 'V' }; Id = 'InvalidRepositoryEndpoint' }
        @{ Case = 'unknown scheme'; Arguments = @{ Uri = 'gs://bucket' }; Id = 'InvalidRepositoryUri' }
        @{ Case = 's3 without //'; Arguments = @{ Uri = 's3:bucket' }; Id = 'InvalidRepositoryUri' }
        @{ Case = 'bad bucket'; Arguments = @{ Uri = 's3://a'; Endpoint = 'https://s3.example.com'; UserName = 'u'; SecretEnvironmentVariable = 'V' }; Id = 'InvalidRepositoryUri' }
        @{ Case = 'dot-dot prefix'; Arguments = @{ Uri = 'swift://c/../x'; Endpoint = 'https://swift.example.com/auth/v1.0'; UserName = 'u'; SecretEnvironmentVariable = 'V' }; Id = 'InvalidRepositoryUri' }
        @{ Case = 'bad variable name'; Arguments = @{ Uri = 's3://bk1'; Endpoint = 'https://s3.example.com'; UserName = 'u'; SecretEnvironmentVariable = '1-X' }; Id = 'InvalidRepositoryParameter' }
        @{ Case = 'Keystone project with v1 auth'; Arguments = @{ Uri = 'swift://c'; Endpoint = 'https://swift.example.com/auth/v1.0'; UserName = 'u'; SecretEnvironmentVariable = 'V'; ProjectName = 'p' }; Id = 'RepositoryParameterNotApplicable' }
        @{ Case = 'Keystone project on S3'; Arguments = @{ Uri = 's3://bk1'; Endpoint = 'https://s3.example.com/v3'; UserName = 'u'; SecretEnvironmentVariable = 'V'; ProjectName = 'p' }; Id = 'RepositoryParameterNotApplicable' }
        @{ Case = 'endpoint for a directory'; Arguments = @{ Uri = '/srv/backups'; Endpoint = 'https://s3.example.com' }; Id = 'RepositoryParameterNotApplicable' }
        @{ Case = 'credential for a pool'; Arguments = @{ Uri = 'rbd:backups'; UserName = 'u'; SecretEnvironmentVariable = 'V' }; Id = 'RepositoryParameterNotApplicable' }
        @{ Case = 'bad zone'; Arguments = @{ Uri = 's3://bk1'; Endpoint = 'https://s3.example.com'; UserName = 'u'; SecretEnvironmentVariable = 'V'; AvailabilityZone = 'a/b' }; Id = 'InvalidRepositoryParameter' }) {
        Use-Config "refuse-$([guid]::NewGuid())" | Out-Null
        { Register-BackupRepository -Name r @Arguments -ErrorAction Stop } | Should -Throw -ErrorId "$Id*"
        Test-Path -LiteralPath $repos | Should -BeFalse
    }

    It 'never echoes a password given in an endpoint' {
        Use-Config 'echo' | Out-Null
        Register-BackupRepository -Name r -Uri s3://bk1 -Endpoint 'https://AKIA:topsecret@s3.example.com' -UserName u -SecretEnvironmentVariable V -ErrorAction SilentlyContinue -ErrorVariable err
        $err[0].FullyQualifiedErrorId | Should -BeLike 'InvalidRepositoryEndpoint,*'
        ($err | Out-String) + $err[0].Exception.Message + $err[0].TargetObject | Should -Not -Match 'topsecret'
    }

    It 'registers Swift with Keystone v3 and its project and domains' {
        Use-Config 'swift' | Out-Null
        Register-BackupRepository -Name dc2 -Uri SWIFT://volumebackups/ -Endpoint https://keystone.example.com/v3 -ProjectName backup -UserDomain Default -ProjectDomain Default -Credential (New-Credential backup-user $secret)
        $r = Get-BackupRepository dc2
        $r.Uri | Should -Be 'swift://volumebackups' -Because 'the scheme is stored in lower case, without a trailing /'
        $r.ProjectName | Should -Be 'backup'
        $r.UserDomain | Should -Be 'Default'
        $r.ProjectDomain | Should -Be 'Default'
        $r.AvailabilityZone | Should -BeNullOrEmpty -Because "null means Cinder's default zone, nova"
        [BlockBackup.Engine.Configuration.RegisteredRepository]::IsKeystoneV3($r.Endpoint) | Should -BeTrue
    }

    It 'shows a table of Name, Uri, Endpoint, UserName and CredentialSource' {
        Use-Config 'table' | Out-Null
        Register-BackupRepository -Name offsite @s3 -UserName AKIAEXAMPLE -SecretEnvironmentVariable BB_TEST_S3_SECRET
        $table = Get-BackupRepository | Out-String -Width 200
        $table | Should -Match 'Name\s+Uri\s+Endpoint\s+UserName\s+CredentialSource'
        $table | Should -Match 'offsite\s+s3://backups/node1\s+https://s3.example.com\s+AKIAEXAMPLE\s+Environment \(\$env:BB_TEST_S3_SECRET\)'
    }

    It 'completes -Name from the registered names' {
        Use-Config 'completion' | Out-Null
        Register-BackupRepository -Name offsite -Uri (Join-Path $TestDrive 'o')
        Register-BackupRepository -Name offline -Uri rbd:pool
        Register-BackupRepository -Name local -Uri (Join-Path $TestDrive 'l')
        foreach ($line in 'Get-BackupRepository -Name off', 'Unregister-BackupRepository off', 'Register-BackupRepository -Name off') {
            $completion = TabExpansion2 -inputScript $line -cursorColumn $line.Length
            $completion.CompletionMatches.CompletionText | Sort-Object | Should -Be @('offline', 'offsite') -Because $line
        }
        (TabExpansion2 -inputScript 'Get-BackupRepository -Name off' -cursorColumn 30).CompletionMatches.ToolTip | Should -Contain 'offline: rbd:pool'
    }
}

Describe 'Secrets' {
    It 'stores the secret in a 0600 file in a 0700 directory on Unix' -Skip:$IsWindows {
        Use-Config 'modes' | Out-Null
        $umask = & sh -c umask
        Register-BackupRepository -Name offsite @s3 -Credential (New-Credential AKIAEXAMPLE $secret)
        [IO.File]::GetUnixFileMode((Join-Path $repos 'offsite.secret')) | Should -Be ([System.IO.UnixFileMode]'UserRead, UserWrite') -Because "umask $umask"
        [IO.File]::GetUnixFileMode($repos) | Should -Be ([System.IO.UnixFileMode]'UserRead, UserWrite, UserExecute')
        [IO.File]::ReadAllText((Join-Path $repos 'offsite.secret')) | Should -BeExactly $secret
        # Replaced with -Force: still 0600 (a new file renamed over the old one).
        Register-BackupRepository -Name offsite @s3 -Credential (New-Credential AKIAEXAMPLE 'second') -Force
        [IO.File]::GetUnixFileMode((Join-Path $repos 'offsite.secret')) | Should -Be ([System.IO.UnixFileMode]'UserRead, UserWrite')
        Get-ChildItem -LiteralPath $repos -Force -Filter '.tmp-*' | Should -BeNullOrEmpty
    }

    It 'keeps the secret out of every output: Format-List *, Format-Table, ConvertTo-Json, -Verbose, -WhatIf, the JSON file' {
        Use-Config 'hidden' | Out-Null
        $output = Register-BackupRepository -Name offsite @s3 -Credential (New-Credential AKIAEXAMPLE $secret) -PassThru -Verbose 4>&1 | Out-String
        $output += Register-BackupRepository -Name offsite @s3 -Credential (New-Credential AKIAEXAMPLE $secret) -Force -WhatIf 6>&1 | Out-String
        $repo = Get-BackupRepository -Name offsite
        $output += $repo | Format-List * | Out-String
        $output += $repo | Format-Table * | Out-String
        $output += $repo | ConvertTo-Json -Depth 5
        $output += $repo | Select-Object * | Out-String
        $output += $repo.ToString()
        $output += Get-Content -Raw -LiteralPath (Join-Path $repos 'offsite.json')
        $output | Should -Match 'AKIAEXAMPLE' -Because 'the output is real'
        $output | Should -Not -Match ([regex]::Escape($secret))
        $output | Should -Not -Match 'EXAMPLEKEY'
        $repo.PSObject.Properties.Name | Should -Not -Contain 'Secret'
        $repo.PSObject.Properties.Name | Should -Not -Contain 'Password'
    }

    It 'reads the secret from the environment variable where the repository is used, and says which one is missing' {
        Use-Config 'environment' | Out-Null
        Remove-Item Env:BB_TEST_S3_SECRET -ErrorAction SilentlyContinue
        Register-BackupRepository -Name ci @s3 -UserName AKIAEXAMPLE -SecretEnvironmentVariable BB_TEST_S3_SECRET
        $repo = Get-BackupRepository ci
        $repo.CredentialSource | Should -Be 'Environment'
        $repo.SecretEnvironmentVariable | Should -Be 'BB_TEST_S3_SECRET'
        Test-Path -LiteralPath (Join-Path $repos 'ci.secret') | Should -BeFalse

        $missing = Get-EngineError { $registry.GetSecret($repo) }
        $missing.ErrorId | Should -Be 'RepositorySecretMissing'
        $missing.Message | Should -Match 'BB_TEST_S3_SECRET'
        $missing.Kind | Should -Be 'NotFound'

        $env:BB_TEST_S3_SECRET = $secret
        try {
            $registry.GetSecret($repo) | Should -BeExactly $secret
            # The registry of another process reads it the same way (nothing cached).
            $child = & $Pwsh -NoProfile -NonInteractive -Command "Import-Module '$ModuleManifest'; [BlockBackup.Engine.Configuration.RepositoryRegistry]::new().GetSecret((Get-BackupRepository ci)).Length"
            $child | Should -Be $secret.Length
        }
        finally {
            Remove-Item Env:BB_TEST_S3_SECRET
        }
    }

    It 'names the secret file when a stored secret is missing, and refuses one other users may read' {
        Use-Config 'missing-secret' | Out-Null
        Register-BackupRepository -Name offsite @s3 -Credential (New-Credential AKIAEXAMPLE $secret)
        $repo = Get-BackupRepository offsite
        $secretFile = Join-Path $repos 'offsite.secret'
        if (-not $IsWindows) {
            [IO.File]::SetUnixFileMode($secretFile, [System.IO.UnixFileMode]'UserRead, UserWrite, GroupRead, OtherRead')
            $open = Get-EngineError { $registry.GetSecret($repo) }
            $open.ErrorId | Should -Be 'RepositoryRegistrationInvalid'
            $open.Message | Should -Match ([regex]::Escape($secretFile))
            $open.Message | Should -Match 'chmod 600'
            $open.Message | Should -Not -Match ([regex]::Escape($secret))
        }

        Remove-Item -LiteralPath $secretFile
        $missing = Get-EngineError { $registry.GetSecret($repo) }
        $missing.ErrorId | Should -Be 'RepositorySecretMissing'
        $missing.Message | Should -Match ([regex]::Escape($secretFile))
    }

    It 'refuses an empty password' {
        Use-Config 'empty' | Out-Null
        $empty = [pscredential]::new('AKIAEXAMPLE', [securestring]::new())
        { Register-BackupRepository -Name offsite @s3 -Credential $empty -ErrorAction Stop } | Should -Throw -ErrorId 'RepositoryCredentialRequired*'
        Test-Path -LiteralPath (Join-Path $repos 'offsite.secret') | Should -BeFalse
    }
}

Describe 'Damaged and hostile registration files' {
    BeforeEach {
        Use-Config "damaged-$([guid]::NewGuid())" | Out-Null
        Register-BackupRepository -Name good -Uri (Join-Path $TestDrive 'good')
    }

    It 'reports <Case> as RepositoryRegistrationInvalid naming the file, and still lists the others' -ForEach @(
        @{ Case = 'invalid JSON'; Content = '{ "name": "bad", "uri": '; Match = 'not a JSON object' }
        @{ Case = 'not an object'; Content = '[1, 2]'; Match = 'not a JSON object' }
        @{ Case = 'binary'; Content = [string][char]0xFFFE + "`0`0"; Match = 'not a JSON object' }
        @{ Case = 'a secret put in it'; Content = '{ "name": "bad", "uri": "s3://bk1", "secretAccessKey": "hunter2-very-secret" }'; Match = 'secretAccessKey.*not a registration field' }
        @{ Case = 'another name'; Content = '{ "name": "good", "uri": "/srv/b" }'; Match = 'differs from the file' }
        @{ Case = 'a relative path'; Content = '{ "name": "bad", "uri": "../../etc" }'; Match = 'not an absolute directory path' }
        @{ Case = 'a number for a string'; Content = '{ "name": "bad", "uri": 5 }'; Match = 'uri is a Integer' }
        @{ Case = 'an unknown credential source'; Content = '{ "name": "bad", "uri": "/srv/b", "credentialSource": "Keyring" }'; Match = 'credentialSource' }
        @{ Case = 'S3 without credential'; Content = '{ "name": "bad", "uri": "s3://bk1", "endpoint": "https://s3.example.com" }'; Match = 'RepositoryCredentialRequired|needs an access key' }
        @{ Case = 'deeply nested'; Content = '{ "name": ' + ('[' * 100) + (']' * 100) + ' }'; Match = 'not a JSON object' }) {
        $file = Join-Path $repos 'bad.json'
        [IO.File]::WriteAllText($file, $Content)
        $found = Get-BackupRepository -ErrorAction SilentlyContinue -ErrorVariable err
        $found.Name | Should -Be 'good'
        $err.Count | Should -Be 1
        $err[0].FullyQualifiedErrorId | Should -BeLike 'RepositoryRegistrationInvalid,*'
        $err[0].CategoryInfo.Category | Should -Be 'InvalidData'
        $err[0].Exception.Message | Should -Match ([regex]::Escape($file))
        $err[0].Exception.Message | Should -Match $Match
        $err[0].Exception.Message | Should -Not -Match 'hunter2'

        $engine = Get-EngineError { $registry.TryGet('bad') }
        $engine.ErrorId | Should -Be 'RepositoryRegistrationInvalid'
        (Get-EngineError { $registry.List() }).ErrorId | Should -Be 'RepositoryRegistrationInvalid'

        # A damaged registration can still be removed (with a warning), or replaced with -Force.
        Register-BackupRepository -Name bad -Uri (Join-Path $TestDrive 'b') -ErrorAction SilentlyContinue -ErrorVariable err2
        $err2[0].FullyQualifiedErrorId | Should -BeLike 'RepositoryAlreadyRegistered,*'
        Unregister-BackupRepository -Name bad -WarningAction SilentlyContinue -WarningVariable warned
        $warned | Should -Match 'removed anyway'
        $file | Should -Not -Exist
        (Get-BackupRepository).Name | Should -Be 'good'
    }

    It 'refuses a registration file larger than any registration' {
        [IO.File]::WriteAllText((Join-Path $repos 'huge.json'), '{ "name": "huge", "uri": "/srv/' + ('x' * 70000) + '" }')
        $err = Get-EngineError { $registry.Get('huge') }
        $err.ErrorId | Should -Be 'RepositoryRegistrationInvalid'
        $err.Message | Should -Match 'bytes'
    }

    It 'ignores temporary files and files that are not registration names' {
        [IO.File]::WriteAllText((Join-Path $repos '.tmp-0123-good.json'), '{')
        [IO.File]::WriteAllText((Join-Path $repos 'not a name.json'), '{')
        (Get-BackupRepository).Name | Should -Be 'good'
        $registry.Names() | Should -Be @('good')
    }
}

# ssh-style trust, with the hostile user played by nobody (runuser): the tests run as root, as CI does.
Describe 'A configuration directory, registration or secret another user can change' -Skip:(-not $IsLinux -or (& id -u) -ne '0' -or -not (Get-Command runuser -ErrorAction SilentlyContinue)) {
    BeforeAll {

        # A fresh configuration directory (0700, as Register-BackupRepository makes it) with two registrations.
        function script:New-TrustConfig {
            $parent = Join-Path $TestDrive "trust-$([guid]::NewGuid())"
            New-Item -ItemType Directory -Path $parent | Out-Null
            $dir = Use-Config (Join-Path (Split-Path -Leaf $parent) 'cfg')
            Register-BackupRepository -Name offsite @s3 -Credential (New-Credential AKIAEXAMPLE $secret)
            Register-BackupRepository -Name local -Uri (Join-Path $TestDrive 'local')
            $dir
        }

        # What nobody writes: a registration that sends root's key to a listener of theirs.
        $script:evil = '{ "name": "offsite", "uri": "s3://backups/node1", "endpoint": "http://127.0.0.1:9/", "userName": "AKIAEXAMPLE", "credentialSource": "Stored" }'

    }

    It 'works with the directories 0700 and the files 0600 it makes, whatever the umask' {
        $dir = New-TrustConfig
        (Get-BackupRepository).Name | Should -Be @('local', 'offsite')
        $registry.GetSecret($registry.Get('offsite')) | Should -BeExactly $secret
        [IO.File]::GetUnixFileMode($dir) | Should -Be ([System.IO.UnixFileMode]'UserRead, UserWrite, UserExecute')
        [IO.File]::GetUnixFileMode((Join-Path $repos 'local.json')) | Should -Be ([System.IO.UnixFileMode]'UserRead, UserWrite')
        # A umask that lets the group write changes nothing: the modes are set, not left to it.
        $dir2 = Join-Path $TestDrive "umask-$([guid]::NewGuid())"
        & /bin/sh -c "umask 000; BLOCKBACKUP_CONFIG_DIR='$dir2' '$Pwsh' -NoProfile -NonInteractive -Command `"Import-Module '$ModuleManifest'; Register-BackupRepository -Name l -Uri /srv/l; Get-BackupRepository l | Out-Null`""
        $LASTEXITCODE | Should -Be 0
        [IO.File]::GetUnixFileMode($dir2) | Should -Be ([System.IO.UnixFileMode]'UserRead, UserWrite, UserExecute')
        [IO.File]::GetUnixFileMode((Join-Path $dir2 'repositories')) | Should -Be ([System.IO.UnixFileMode]'UserRead, UserWrite, UserExecute')
        [IO.File]::GetUnixFileMode((Join-Path $dir2 'repositories/l.json')) | Should -Be ([System.IO.UnixFileMode]'UserRead, UserWrite')
    }

    It 'refuses a configuration directory others can write (0777), after nobody replaced its registrations' {
        $dir = New-TrustConfig
        chmod 0777 $dir
        # What the attack did: move root's folder away, make one's own, plant a registration in it.
        Invoke-AsNobody "cd '$dir' && mv repositories gone && mkdir repositories && printf '%s' '$evil' > repositories/offsite.json"
        Get-BackupRepository -ErrorAction SilentlyContinue -ErrorVariable err | Should -BeNullOrEmpty
        Assert-NotTrusted $err[0] $dir 'group and others can write it \(mode 0777\)' "chmod go-w '$dir'"
        $err[0].Exception.Message | Should -Not -Match ([regex]::Escape($secret))
        { Get-BackupRepository -ErrorAction Stop } | Should -Throw -ErrorId 'ConfigurationNotTrusted*' 
        (Get-EngineError { $registry.GetSecret($registry.Get('offsite')) }).ErrorId | Should -Be 'ConfigurationNotTrusted'
        { Register-BackupRepository -Name other -Uri /srv/o -ErrorAction Stop } | Should -Throw -ErrorId 'ConfigurationNotTrusted*'
        # A repository named by its registration is not opened either.
        { Get-VolumeBackup -Repository offsite -ErrorAction Stop } | Should -Throw -ErrorId 'ConfigurationNotTrusted*'
    }

    It 'refuses a configuration directory another user owns' {
        $shared = Join-Path $TestDrive "shared-$([guid]::NewGuid())"
        New-Item -ItemType Directory -Path $shared | Out-Null
        chmod 1777 $shared   # like /tmp: anyone may make a directory there
        $dir = Join-Path $shared 'cfg'
        Invoke-AsNobody "mkdir -m 0755 '$dir' && mkdir -m 0755 '$dir/repositories' && printf '%s' '$evil' > '$dir/repositories/offsite.json'"
        Use-Config (Join-Path (Split-Path -Leaf $shared) 'cfg') | Out-Null
        Get-BackupRepository -ErrorAction SilentlyContinue -ErrorVariable err | Should -BeNullOrEmpty
        Assert-NotTrusted $err[0] $dir 'owned by uid 65534, neither this user \(uid 0\) nor root' "chown 0 '$dir'"
        { Register-BackupRepository -Name offsite @s3 -Credential (New-Credential AKIAEXAMPLE $secret) -ErrorAction Stop } | Should -Throw -ErrorId 'ConfigurationNotTrusted*'
        Test-Path -LiteralPath (Join-Path $dir 'repositories/offsite.secret') | Should -BeFalse -Because 'the secret must not be written where nobody can read it'
    }

    It 'refuses a configuration directory inside a directory others can write (not sticky)' {
        $open = Join-Path $TestDrive "open-$([guid]::NewGuid())"
        New-Item -ItemType Directory -Path $open | Out-Null
        chmod 0777 $open
        Use-Config (Join-Path (Split-Path -Leaf $open) 'cfg') | Out-Null
        { Register-BackupRepository -Name local -Uri /srv/l -ErrorAction Stop } | Should -Throw -ErrorId 'ConfigurationNotTrusted*'
        Test-Path -LiteralPath (Join-Path $open 'cfg') | Should -BeFalse
        Register-BackupRepository -Name local -Uri /srv/l -ErrorAction SilentlyContinue -ErrorVariable err
        Assert-NotTrusted $err[0] $open 'group and others can write it' "chmod go-w '$open'"
    }

    It 'refuses a registration file nobody owns, as an error for that one only' {
        $dir = New-TrustConfig
        chmod 0711 $dir; chmod 0777 $repos   # for a moment: what a careless chmod allows
        Invoke-AsNobody "cd '$repos' && rm offsite.json && printf '%s' '$evil' > offsite.json && chmod 0644 offsite.json"
        chmod 0700 $dir; chmod 0700 $repos
        $file = Join-Path $repos 'offsite.json'
        $found = Get-BackupRepository -ErrorAction SilentlyContinue -ErrorVariable err
        $found.Name | Should -Be 'local'
        $err.Count | Should -Be 1
        Assert-NotTrusted $err[0] $file 'owned by uid 65534' "chown 0 '$file'"
        (Get-EngineError { $registry.GetSecret($registry.Get('offsite')) }).ErrorId | Should -Be 'ConfigurationNotTrusted'
        # It can still be removed (its folder is trusted), with a warning that says why.
        Unregister-BackupRepository -Name offsite -WarningVariable warned -WarningAction SilentlyContinue
        $warned | Should -Match 'not trusted.*removed anyway'
        $file | Should -Not -Exist
    }

    It 'refuses a registration file others can write (0666)' {
        $dir = New-TrustConfig
        $file = Join-Path $repos 'offsite.json'
        chmod 0666 $file
        chmod 0711 $dir; chmod 0711 $repos   # so nobody can reach it
        Invoke-AsNobody "printf '%s' '$evil' > '$file'"
        chmod 0700 $dir; chmod 0700 $repos
        Get-BackupRepository -Name offsite -ErrorAction SilentlyContinue -ErrorVariable err | Should -BeNullOrEmpty
        Assert-NotTrusted $err[0] $file 'group and others can write it \(mode 0666\)' "chmod go-w '$file'"
    }

    It 'refuses a symbolic link in place of a registration, naming it and its target' {
        $dir = New-TrustConfig
        $planted = Join-Path $TestDrive "planted-$([guid]::NewGuid()).json"
        Set-Content -LiteralPath $planted -Value $evil
        chmod 0711 $dir; chmod 0777 $repos   # for a moment: what a careless chmod allows
        Invoke-AsNobody "cd '$repos' && rm offsite.json && ln -s '$planted' offsite.json"
        chmod 0700 $dir; chmod 0700 $repos
        $file = Join-Path $repos 'offsite.json'
        $found = Get-BackupRepository -ErrorAction SilentlyContinue -ErrorVariable err
        $found.Name | Should -Be 'local'
        Assert-NotTrusted $err[0] $file 'symbolic link' 'replace it with the file'
        $err[0].Exception.Message | Should -Match ([regex]::Escape($planted))
        # Unregistering removes the link, not what it points to; a dangling link too.
        Remove-Item -LiteralPath $planted
        Unregister-BackupRepository -Name offsite -WarningAction SilentlyContinue
        Test-Path -LiteralPath $file | Should -BeFalse
        [IO.File]::Exists($file) -or [IO.Directory]::Exists($file) -or ((Get-Item -Force -LiteralPath $repos).GetFileSystemInfos().Name -contains 'offsite.json') | Should -BeFalse
        (Get-BackupRepository).Name | Should -Be 'local'
    }

    It 'refuses a secret file nobody owns, or one that is a symbolic link' {
        $dir = New-TrustConfig
        $secretFile = Join-Path $repos 'offsite.secret'
        chmod 0711 $dir; chmod 0777 $repos   # for a moment: what a careless chmod allows
        Invoke-AsNobody "cd '$repos' && rm offsite.secret && printf 'theirs' > offsite.secret && chmod 0600 offsite.secret"
        chmod 0700 $dir; chmod 0700 $repos
        $owned = Get-EngineError { $registry.GetSecret($registry.Get('offsite')) }
        $owned.ErrorId | Should -Be 'ConfigurationNotTrusted'
        $owned.Message | Should -Match ([regex]::Escape("'$secretFile'"))
        $owned.Message | Should -Match 'owned by uid 65534'
        Remove-Item -LiteralPath $secretFile
        $elsewhere = Join-Path $TestDrive "secret-$([guid]::NewGuid())"
        Set-Content -LiteralPath $elsewhere -Value 'elsewhere' -NoNewline
        chmod 0600 $elsewhere
        New-Item -ItemType SymbolicLink -Path $secretFile -Target $elsewhere | Out-Null
        $linked = Get-EngineError { $registry.GetSecret($registry.Get('offsite')) }
        $linked.ErrorId | Should -Be 'ConfigurationNotTrusted'
        $linked.Message | Should -Match 'symbolic link'
    }
}

Describe 'The examples, as written' {
    BeforeAll {
        Mock Get-Credential { [pscredential]::new('AKIAIOSFODNN7EXAMPLE', (ConvertTo-SecureString -String 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' -AsPlainText -Force)) }
        # Runs an example as pasted, in $TestDrive, with errors stopping it.
        function script:Invoke-Example {
            param([string] $Code)
            Push-Location -LiteralPath $TestDrive
            try {
                $ErrorActionPreference = 'Stop'
                & ([scriptblock]::Create($Code)) 6>&1 | Out-String
            }
            finally {
                Pop-Location
            }
        }
    }

    It "run from each cmdlet's help, in order: register, get, unregister" {
        Use-Config 'help-examples' | Out-Null
        $ran = foreach ($cmdlet in 'Register-BackupRepository', 'Get-BackupRepository', 'Unregister-BackupRepository') {
            $examples = @((Get-Help $cmdlet -Examples).Examples.Example)
            $examples.Count | Should -BeGreaterOrEqual 2 -Because $cmdlet
            foreach ($example in $examples) {
                $example.Code | Should -Match $cmdlet
                Invoke-Example $example.Code
            }
        }
        Should -Invoke Get-Credential -Times 2 -Exactly
        ($ran -join "`n") | Should -Match 'offsite'
        (Get-BackupRepository).Name | Should -Be @('local', 'offsite-env', 'swift-dc2') -Because "Unregister's example removed offsite"
        (Get-BackupRepository local).Uri | Should -Be (Join-Path $TestDrive 'backups')
        (Get-BackupRepository swift-dc2).AvailabilityZone | Should -Be 'dc2'
    }

    It "run from the README's object-storage block: its registrations, offline" {
        Use-Config 'readme' | Out-Null
        $readme = Get-Content -Raw -LiteralPath (Join-Path $repoRoot 'README.md')
        $blocks = [regex]::Matches($readme, '(?ms)^```powershell\r?\n(.*?)^```') | ForEach-Object { $_.Groups[1].Value }
        $block = $blocks | Where-Object { $_ -match 'Register-BackupRepository' } | Select-Object -First 1
        $block | Should -Match "Credential \(Get-Credential -Message '[^']+'\)"   # the prompt says what to type
        $block | Should -Match '-SecretEnvironmentVariable'
        # Its registrations as written (the backups in it need a real endpoint: Module.Tests.ps1 runs
        # the whole block against the test gateway).
        $registrations = @($block -split "`n" | Where-Object { $_ -match '^\s*(Register|Get|Unregister)-BackupRepository' }) -join "`n"
        $output = Invoke-Example $registrations
        $output | Should -Match 'offsite\s+s3://volumebackups'
        $output | Should -Not -Match 'EXAMPLEKEY'
        (Get-BackupRepository).Name | Should -Be @('offsite', 'swift-offsite') -Because 'the block unregisters offsite-ci'
        $registry.GetSecret((Get-BackupRepository offsite)) | Should -BeExactly 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'
    }
}
