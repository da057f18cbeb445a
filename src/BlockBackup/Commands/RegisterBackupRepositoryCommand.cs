using System.Management.Automation;
using System.Text.RegularExpressions;
using BlockBackup.Engine.Configuration;
using BlockBackup.Engine.Errors;

namespace BlockBackup.Commands;

/// <summary>
/// Gives a repository location a short name on this node, with its endpoint and credential, so
/// that neither is written on a command line again. The secret comes from a PSCredential (stored
/// for the current user only) or from an environment variable read where the repository is used.
/// </summary>
[Cmdlet(VerbsLifecycle.Register, "BackupRepository", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low, DefaultParameterSetName = NoCredentialSet)]
[OutputType(typeof(RegisteredRepository))]
public sealed partial class RegisterBackupRepositoryCommand : RegisteredRepositoryCmdlet
{
    private const string NoCredentialSet = "NoCredential";
    private const string CredentialSet = "Credential";
    private const string EnvironmentSet = "SecretEnvironmentVariable";

    /// <summary>The short name: letters, digits, '-', '_' and '.', not starting with '.'.</summary>
    [Parameter(Mandatory = true, Position = 0)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(RegisteredRepositoryNameCompleter))]
    public string Name { get; set; } = null!;

    /// <summary>s3://bucket[/prefix], swift://container[/prefix], rbd:&lt;pool&gt; or a directory (resolved against the current location).</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    public string Uri { get; set; } = null!;

    /// <summary>S3: the endpoint URL. Swift: the auth URL (…/auth/v1.0, or Keystone …/v3).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Endpoint { get; set; }

    /// <summary>The access key id (S3) or user (Swift) and its secret key or password; the secret is stored for the current user only.</summary>
    [Parameter(Mandatory = true, ParameterSetName = CredentialSet)]
    [Credential]
    public PSCredential Credential { get; set; } = null!;

    /// <summary>The environment variable that holds the secret where the repository is used (nothing secret is stored).</summary>
    [Parameter(Mandatory = true, ParameterSetName = EnvironmentSet)]
    [ValidateNotNullOrEmpty]
    public string SecretEnvironmentVariable { get; set; } = null!;

    /// <summary>With -SecretEnvironmentVariable: the access key id (S3) or user (Swift).</summary>
    [Parameter(Mandatory = true, ParameterSetName = EnvironmentSet)]
    [ValidateNotNullOrEmpty]
    public string UserName { get; set; } = null!;

    [Parameter] [ValidateNotNullOrEmpty] public string? Region { get; set; }

    /// <summary>The availability zone Cinder puts in object names; Cinder's default "nova" when not given.</summary>
    [Parameter] [ValidateNotNullOrEmpty] public string? AvailabilityZone { get; set; }

    [Parameter] [ValidateNotNullOrEmpty] public string? ProjectName { get; set; }
    [Parameter] [ValidateNotNullOrEmpty] public string? UserDomain { get; set; }
    [Parameter] [ValidateNotNullOrEmpty] public string? ProjectDomain { get; set; }

    /// <summary>Replace an existing registration of the name (and its secret).</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>Emit the registration.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    [GeneratedRegex("^(?<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?<rest>.*)$", RegexOptions.Singleline)]
    private static partial Regex UrlRegex();

    [GeneratedRegex("^(?i:s3|swift):(?!//)")]
    private static partial Regex HalfUrlRegex();

    protected override void ProcessRecord() => ForItem(() =>
    {
        var registry = Registry();
        string? secret = null;
        var source = RepositoryCredentialSource.None;
        string? user = null;
        if (ParameterSetName == CredentialSet)
        {
            source = RepositoryCredentialSource.Stored;
            user = Credential.UserName.TrimStart('\\');
            secret = Credential.GetNetworkCredential().Password;
        }
        else if (ParameterSetName == EnvironmentSet)
        {
            source = RepositoryCredentialSource.Environment;
            user = UserName;
        }

        var repository = new RegisteredRepository
        {
            Name = Name,
            Uri = StoredUri(Uri),
            Endpoint = Endpoint,
            UserName = user,
            Region = Region,
            AvailabilityZone = AvailabilityZone,
            ProjectName = ProjectName,
            UserDomain = UserDomain,
            ProjectDomain = ProjectDomain,
            CredentialSource = source,
            SecretEnvironmentVariable = source == RepositoryCredentialSource.Environment ? SecretEnvironmentVariable : null,
        };
        repository.Validate();
        var exists = registry.Exists(Name);
        if (exists && !Force)
        {
            throw new BackupException(BackupErrorKind.InvalidOperation, "RepositoryAlreadyRegistered",
                $"A repository '{Name}' is registered already ('{registry.RegistrationPath(Name)}'); use -Force to replace it, or Unregister-BackupRepository first.", Name);
        }

        registry.RefuseRegisteredLocation(repository); // before -WhatIf says it would register

        if (repository.Uri.StartsWith("swift://", StringComparison.Ordinal) && repository.Endpoint!.StartsWith("http://", StringComparison.OrdinalIgnoreCase))
        {
            WriteWarning($"Repository '{Name}': the Swift auth URL is plain http://, so the key or password travels unencrypted when a token is requested.");
        }

        var action = $"{(exists ? "Replace the registration of" : "Register")} backup repository '{Name}' as {repository.Uri}{(repository.Endpoint is null ? "" : $" at {repository.Endpoint}")}";
        if (!ShouldProcess(registry.RegistrationPath(Name), action))
        {
            return;
        }

        var stored = registry.Register(repository, secret, Force);
        if (source == RepositoryCredentialSource.Environment && string.IsNullOrEmpty(Environment.GetEnvironmentVariable(SecretEnvironmentVariable)))
        {
            WriteVerbose($"The environment variable {SecretEnvironmentVariable} is not set in this session; it must be set where repository '{Name}' is used.");
        }

        if (PassThru)
        {
            WriteObject(stored);
        }
    });

    /// <summary>
    /// The location as stored: s3:// and swift:// with the scheme in lower case and no trailing
    /// '/', rbd: as given, a path resolved against the current location (the registry has none).
    /// </summary>
    private string StoredUri(string text)
    {
        if (UrlRegex().Match(text.Trim()) is { Success: true } url)
        {
            var scheme = url.Groups["scheme"].Value.ToLowerInvariant();
            return scheme is "s3" or "swift" ? $"{scheme}://{url.Groups["rest"].Value.TrimEnd('/')}" : text;
        }

        if (Engine.Repository.RbdBackupPoolLocation.IsPool(text))
        {
            return text;
        }

        if (HalfUrlRegex().IsMatch(text))
        {
            throw InvalidUri(text, "write s3://bucket[/prefix] or swift://container[/prefix]");
        }

        string resolved;
        ProviderInfo provider;
        try
        {
            resolved = SessionState.Path.GetUnresolvedProviderPathFromPSPath(text, out provider, out _);
        }
        catch (Exception ex) when (ex is System.Management.Automation.DriveNotFoundException or ProviderNotFoundException or ItemNotFoundException or PSArgumentException or NotSupportedException or ArgumentException)
        {
            throw InvalidUri(text, $"it is not a directory path ({ex.Message}); give s3://, swift://, rbd:<pool> or a directory");
        }

        return provider.Name == "FileSystem" ? resolved : throw InvalidUri(text, $"it is a {provider.Name} path, not a file-system directory");
    }

    private BackupException InvalidUri(string text, string what) =>
        new(BackupErrorKind.InvalidArgument, "InvalidRepositoryUri", $"Repository '{Name}', Uri: '{text}': {what}.", text);
}
