using System.Text.RegularExpressions;
using BlockBackup.Engine.Errors;
using Newtonsoft.Json;
using Newtonsoft.Json.Converters;

namespace BlockBackup.Engine.Configuration;

/// <summary>Where a registered repository's secret (S3 secret access key, Swift key or password) comes from.</summary>
[JsonConverter(typeof(StringEnumConverter))]
public enum RepositoryCredentialSource
{
    /// <summary>No credential: a directory or rbd: location.</summary>
    None,
    /// <summary>The node's registry holds it: <c>repositories/&lt;name&gt;.secret</c> (mode 0600; DPAPI CurrentUser on Windows).</summary>
    Stored,
    /// <summary>The environment variable <see cref="RegisteredRepository.SecretEnvironmentVariable"/> of the process that uses the repository.</summary>
    Environment,
}

/// <summary>
/// A repository location with a short name, kept in the node's registry
/// (<see cref="RepositoryRegistry"/>), so that endpoints and credentials are never written on a
/// command line and runbooks and policies can name the repository. The secret is not part of
/// this record: <see cref="RepositoryRegistry.GetSecret"/> reads it when it is needed.
/// </summary>
public sealed partial record RegisteredRepository
{
    /// <summary>The short name (see <see cref="RepositoryRegistry.IsValidName"/>).</summary>
    public required string Name { get; init; }

    /// <summary>
    /// <c>s3://bucket[/prefix]</c>, <c>swift://container[/prefix]</c>, <c>rbd:pool[/namespace]</c> or an
    /// absolute directory path.
    /// </summary>
    public required string Uri { get; init; }

    /// <summary>S3: the endpoint URL. Swift: the auth URL, <c>…/auth/v1.0</c> (v1 auth) or Keystone <c>…/v3</c>.</summary>
    public string? Endpoint { get; init; }

    /// <summary>S3: the access key id. Swift: the user (v1: <c>account:user</c>).</summary>
    public string? UserName { get; init; }

    /// <summary>S3 region, or the Swift region of the Keystone catalog.</summary>
    public string? Region { get; init; }

    /// <summary>The availability zone Cinder puts in object names (<c>az_&lt;zone&gt;_backup_…</c>); null means Cinder's default, "nova".</summary>
    public string? AvailabilityZone { get; init; }

    /// <summary>Keystone v3: the project the token is scoped to.</summary>
    public string? ProjectName { get; init; }

    /// <summary>Keystone v3: the user's domain.</summary>
    public string? UserDomain { get; init; }

    /// <summary>Keystone v3: the project's domain.</summary>
    public string? ProjectDomain { get; init; }

    public RepositoryCredentialSource CredentialSource { get; init; }

    /// <summary>With <see cref="RepositoryCredentialSource.Environment"/>: the variable that holds the secret.</summary>
    public string? SecretEnvironmentVariable { get; init; }

    public DateTimeOffset RegisteredUtc { get; init; } = DateTimeOffset.UtcNow;

    internal enum UriKind
    {
        Directory,
        RbdPool,
        S3,
        Swift,
    }

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    private static partial Regex RegionRegex();

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._:-]{0,254}$")]
    private static partial Regex ZoneRegex();

    [GeneratedRegex("^[A-Za-z_][A-Za-z0-9_]{0,254}$")]
    private static partial Regex VariableRegex();

    [GeneratedRegex("^[A-Za-z][A-Za-z0-9+.-]*://")]
    private static partial Regex SchemeRegex();

    internal static UriKind KindOf(string uri)
    {
        if (uri.StartsWith("s3://", StringComparison.Ordinal))
        {
            return UriKind.S3;
        }

        if (uri.StartsWith("swift://", StringComparison.Ordinal))
        {
            return UriKind.Swift;
        }

        return Repository.RbdBackupPoolLocation.IsPool(uri) ? UriKind.RbdPool : UriKind.Directory;
    }

    /// <summary>
    /// Refuses what could not be used, naming the repository and the field: a bad name or
    /// location, an object store without endpoint or credential, settings that do not apply to
    /// the location's kind, an endpoint that carries credentials.
    /// </summary>
    public void Validate()
    {
        if (!RepositoryRegistry.IsValidName(Name))
        {
            throw Invalid("InvalidRepositoryName", "Name",
                $"'{Show(Name)}' is not a repository name: 1-64 letters, digits, '-', '_' or '.', not starting with '.' (a name can never be taken for a path or URL)");
        }

        if (string.IsNullOrWhiteSpace(Uri))
        {
            throw Invalid("InvalidRepositoryUri", "Uri", "it is empty; give s3://bucket[/prefix], swift://container[/prefix], rbd:<pool> or a directory");
        }

        if (HasControl(Uri))
        {
            throw Invalid("InvalidRepositoryUri", "Uri", "it contains control characters");
        }

        var kind = KindOf(Uri);
        switch (kind)
        {
            case UriKind.S3:
                ValidateObjectUri("s3://", "bucket", Repository.RepositoryKind.S3);
                break;
            case UriKind.Swift:
                ValidateObjectUri("swift://", "container", Repository.RepositoryKind.Swift);
                break;
            case UriKind.RbdPool:
                var spec = Uri[(Uri.IndexOf(':', StringComparison.Ordinal) + 1)..].Split('/');
                if (spec.Length > 2 || spec.Any(p => p.Length == 0 || p.Any(char.IsWhiteSpace)))
                {
                    throw Invalid("InvalidRepositoryUri", "Uri", $"'{Show(Uri)}' is not an RBD pool; write rbd:<pool> or rbd:<pool>/<namespace>");
                }

                break;
            default:
                if (SchemeRegex().IsMatch(Uri))
                {
                    throw Invalid("InvalidRepositoryUri", "Uri",
                        $"'{Show(Uri)}': only s3:// and swift:// URLs, rbd:<pool> and directories can be registered");
                }

                if (!Path.IsPathFullyQualified(Uri))
                {
                    throw Invalid("InvalidRepositoryUri", "Uri", $"'{Show(Uri)}' is not an absolute directory path (the registry has no current location)");
                }

                if (Repository.ObjectStoreTarget.IsInsideBookkeeping(Uri))
                {
                    throw Invalid("InvalidRepositoryUri", "Uri", $"'{Show(Uri)}' is inside a repository's '{Repository.ObjectStoreTarget.BookkeepingSegment}' bookkeeping directory, which that repository's cleanup removes; choose a directory outside it");
                }

                break;
        }

        var objectStore = kind is UriKind.S3 or UriKind.Swift;
        if (!objectStore)
        {
            foreach (var (field, value) in new[]
                     {
                         (nameof(Endpoint), Endpoint), (nameof(UserName), UserName), (nameof(Region), Region), (nameof(AvailabilityZone), AvailabilityZone),
                         (nameof(ProjectName), ProjectName), (nameof(UserDomain), UserDomain), (nameof(ProjectDomain), ProjectDomain),
                         (nameof(SecretEnvironmentVariable), SecretEnvironmentVariable),
                     })
            {
                if (value is not null)
                {
                    throw Invalid("RepositoryParameterNotApplicable", field,
                        $"it applies to s3:// and swift:// repositories; '{Show(Uri)}' is a {(kind == UriKind.RbdPool ? "Ceph pool (use -CephConfig, -CephUser and -CephKeyring where it is used)" : "directory")}");
                }
            }

            if (CredentialSource != RepositoryCredentialSource.None)
            {
                throw Invalid("RepositoryParameterNotApplicable", nameof(CredentialSource), $"a {kind} location takes no credential");
            }

            return;
        }

        ValidateEndpoint(kind);
        if (CredentialSource == RepositoryCredentialSource.None || string.IsNullOrWhiteSpace(UserName))
        {
            throw Invalid("RepositoryCredentialRequired", "Credential",
                $"{(kind == UriKind.S3 ? "an S3 repository needs an access key id and its secret key" : "a Swift repository needs a user and its key or password")}: give -Credential, or -UserName with -SecretEnvironmentVariable");
        }

        if (!Enum.IsDefined(CredentialSource))
        {
            throw Invalid("InvalidRepositoryParameter", nameof(CredentialSource), $"{(int)CredentialSource} is not None, Stored or Environment");
        }

        Text(nameof(UserName), UserName);
        if (CredentialSource == RepositoryCredentialSource.Environment)
        {
            if (SecretEnvironmentVariable is null || !VariableRegex().IsMatch(SecretEnvironmentVariable))
            {
                throw Invalid("InvalidRepositoryParameter", nameof(SecretEnvironmentVariable),
                    SecretEnvironmentVariable is null
                        ? "it is missing (the credential comes from the environment)"
                        : $"'{Show(SecretEnvironmentVariable)}' is not an environment variable name (letters, digits and '_', not starting with a digit)");
            }
        }
        else if (SecretEnvironmentVariable is not null)
        {
            throw Invalid("InvalidRepositoryParameter", nameof(SecretEnvironmentVariable), "it applies only when the credential comes from the environment");
        }

        if (Region is not null && !RegionRegex().IsMatch(Region))
        {
            throw Invalid("InvalidRepositoryParameter", nameof(Region), $"'{Show(Region)}' is not a region name (letters, digits, '.', '_' and '-')");
        }

        if (AvailabilityZone is not null && !ZoneRegex().IsMatch(AvailabilityZone))
        {
            throw Invalid("InvalidRepositoryParameter", nameof(AvailabilityZone),
                $"'{Show(AvailabilityZone)}' is not an availability zone name (letters, digits, '.', '_', ':' and '-'; it becomes part of object names)");
        }

        var keystone = new[] { (nameof(ProjectName), ProjectName), (nameof(UserDomain), UserDomain), (nameof(ProjectDomain), ProjectDomain) };
        foreach (var (field, value) in keystone.Where(k => k.Item2 is not null))
        {
            if (kind != UriKind.Swift || !IsKeystoneV3(Endpoint!))
            {
                throw Invalid("RepositoryParameterNotApplicable", field, "it applies to Swift repositories authenticated by Keystone v3 (an -Endpoint ending in /v3)");
            }

            Text(field, value);
        }
    }

    /// <summary>
    /// Whether <paramref name="other"/> names the same repository (the same bucket or container and
    /// prefix at the same endpoint, the same directory, the same pool): a typed URL then could not
    /// tell the two registrations apart. Both are valid registrations.
    /// </summary>
    public bool SameLocation(RegisteredRepository other)
    {
        var kind = KindOf(Uri);
        if (kind != KindOf(other.Uri))
        {
            return false;
        }

        return kind switch
        {
            UriKind.S3 or UriKind.Swift => Repository.ObjectStoreTarget.Parse(Uri) == Repository.ObjectStoreTarget.Parse(other.Uri) && SameEndpoint(Endpoint, other.Endpoint),
            UriKind.Directory => string.Equals(Path.TrimEndingDirectorySeparator(Path.GetFullPath(Uri)), Path.TrimEndingDirectorySeparator(Path.GetFullPath(other.Uri)),
                OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal),
            _ => string.Equals(Uri.TrimEnd('/'), other.Uri.TrimEnd('/'), StringComparison.Ordinal),
        };
    }

    /// <summary>Whether <paramref name="inner"/> is a directory inside this directory repository's .blockbackup bookkeeping.</summary>
    public bool IsInBookkeepingOf(RegisteredRepository inner)
    {
        if (KindOf(Uri) != UriKind.Directory || KindOf(inner.Uri) != UriKind.Directory)
        {
            return false;
        }

        var bookkeeping = Path.Combine(Path.GetFullPath(Uri), Repository.ObjectStoreTarget.BookkeepingSegment) + Path.DirectorySeparatorChar;
        return (Path.TrimEndingDirectorySeparator(Path.GetFullPath(inner.Uri)) + Path.DirectorySeparatorChar)
            .StartsWith(bookkeeping, OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal);
    }

    /// <summary>Endpoints as the same service: scheme and host in any letter case, the default port written or not, a trailing '/' or not.</summary>
    private static bool SameEndpoint(string? a, string? b) =>
        System.Uri.TryCreate(a, System.UriKind.Absolute, out var x) && System.Uri.TryCreate(b, System.UriKind.Absolute, out var y)
            ? System.Uri.Compare(x, y, UriComponents.SchemeAndServer | UriComponents.Port, UriFormat.Unescaped, StringComparison.OrdinalIgnoreCase) == 0
              && string.Equals(x.AbsolutePath.TrimEnd('/'), y.AbsolutePath.TrimEnd('/'), StringComparison.Ordinal)
            : string.Equals(a, b, StringComparison.Ordinal);

    /// <summary>Whether a Swift auth URL is Keystone v3's (it ends in /v3); otherwise it is Swift's v1 auth.</summary>
    public static bool IsKeystoneV3(string endpoint) =>
        endpoint.TrimEnd('/').EndsWith("/v3", StringComparison.OrdinalIgnoreCase);

    /// <summary>The rules a typed URL is held to too (<see cref="Repository.ObjectStoreTarget.Parse"/>): one set, so nothing registers that could not be typed, and the reverse.</summary>
    private void ValidateObjectUri(string scheme, string what, Repository.RepositoryKind kind)
    {
        var rest = Uri[scheme.Length..];
        var slash = rest.IndexOf('/', StringComparison.Ordinal);
        var container = slash < 0 ? rest : rest[..slash];
        var example = $"{scheme}{what}[/prefix]";
        if (rest.Length == 0)
        {
            return; // s3:// or swift:// alone: Cinder's default container (ObjectStoreTarget.CinderDefaultContainer)
        }

        if (container.Length == 0)
        {
            throw Invalid("InvalidRepositoryUri", "Uri", $"'{Show(Uri)}' names no {what}; write {example}");
        }

        if (Repository.ObjectStoreTarget.ContainerProblem(kind, container) is { } problem)
        {
            throw Invalid("InvalidRepositoryUri", "Uri", problem);
        }

        if (slash >= 0 && rest[(slash + 1)..].TrimEnd('/') is { Length: > 0 } prefix && Repository.ObjectStoreTarget.PrefixProblem(prefix) is { } bad)
        {
            throw Invalid("InvalidRepositoryUri", "Uri", $"'{Show(Uri)}': {bad}; write {example}");
        }
    }

    private void ValidateEndpoint(UriKind kind)
    {
        var what = kind == UriKind.S3 ? "the S3 endpoint URL, for example https://s3.example.com" : "the Swift auth URL, for example https://swift.example.com/auth/v1.0 or Keystone's https://keystone.example.com/v3";
        if (string.IsNullOrWhiteSpace(Endpoint))
        {
            throw Invalid("RepositoryEndpointRequired", nameof(Endpoint), $"it is required for {kind} repositories: give -Endpoint with {what}");
        }

        // Never echo an endpoint that may carry a credential.
        if (!System.Uri.TryCreate(Endpoint, System.UriKind.Absolute, out var endpoint) || endpoint.Scheme is not ("http" or "https") || HasControl(Endpoint))
        {
            throw Invalid("InvalidRepositoryEndpoint", nameof(Endpoint), $"it is not an http:// or https:// URL; give {what}");
        }

        if (endpoint.UserInfo.Length > 0 || Endpoint.Contains('@', StringComparison.Ordinal))
        {
            throw Invalid("InvalidRepositoryEndpoint", nameof(Endpoint), "it carries a user name or password; give credentials with -Credential or -SecretEnvironmentVariable, never in the URL");
        }

        if (endpoint.Query.Length > 0 || endpoint.Fragment.Length > 0)
        {
            throw Invalid("InvalidRepositoryEndpoint", nameof(Endpoint), "it has a query or fragment; give the plain URL");
        }
    }

    private void Text(string field, string? value)
    {
        if (value is null)
        {
            return;
        }

        if (string.IsNullOrWhiteSpace(value) || value.Length > 256 || HasControl(value))
        {
            throw Invalid("InvalidRepositoryParameter", field, "it must be 1-256 characters without control characters");
        }
    }

    private static bool HasControl(string text) => text.Any(char.IsControl);

    /// <summary>A value as shown in a message: bounded, control characters escaped.</summary>
    internal static string Show(string? text)
    {
        if (text is null)
        {
            return string.Empty;
        }

        var shown = text.Length > 120 ? text[..120] + "…" : text;
        return string.Concat(shown.Select(c => char.IsControl(c) ? $"\\u{(int)c:x4}" : c.ToString()));
    }

    private BackupException Invalid(string id, string field, string what) =>
        new(BackupErrorKind.InvalidArgument, id, $"Repository '{Show(Name)}', {field}: {what.TrimEnd('.')}.", Name);
}
