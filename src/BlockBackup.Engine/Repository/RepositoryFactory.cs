using BlockBackup.Engine.Errors;
using BlockBackup.Engine.ObjectStores;
using BlockBackup.Engine.Rbd;

namespace BlockBackup.Engine.Repository;

/// <summary>
/// A repository location as users write it: a path (local, NFS, \\server\share), rbd:&lt;pool&gt;[/&lt;namespace&gt;],
/// s3://bucket[/prefix] or swift://container[/prefix]; for the object stores with the
/// connection (endpoint, credentials) that a registered repository or the environment supplies.
/// </summary>
public sealed record RepositoryLocation(RepositoryKind Kind, string Value)
{
    /// <summary>How to reach an S3/Swift repository; null means "from the environment" (see <see cref="ObjectStoreConnection.FromEnvironment"/>).</summary>
    public ObjectStoreConnection? Connection { get; init; }

    /// <summary>The registered repository this location came from, if it was given by name.</summary>
    public string? RegisteredName { get; init; }

    /// <summary>
    /// Parses a location; paths are resolved by <paramref name="resolvePath"/> (the caller's
    /// current location, PSDrives). A registered repository's name (Register-BackupRepository)
    /// stands for its location and connection, and wins over a relative directory of the same
    /// name (write ./name for the directory).
    /// </summary>
    public static RepositoryLocation Parse(string text, Func<string, string> resolvePath, Configuration.RepositoryRegistry? registry = null) =>
        Parse(text, resolvePath, registry ?? new Configuration.RepositoryRegistry(), useRegistrations: true);

    private static RepositoryLocation Parse(string text, Func<string, string> resolvePath, Configuration.RepositoryRegistry registry, bool useRegistrations)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidRepository", "The repository location is empty: give a directory, rbd:<pool>, s3://bucket, swift://container or a registered repository's name.", text);
        }

        if (useRegistrations && Configuration.RepositoryRegistry.IsValidName(text) && registry.TryGet(text) is { } registered)
        {
            return FromRegistration(registered, registry, resolvePath);
        }

        if (RbdBackupPool.IsRbdRepository(text))
        {
            return new(RepositoryKind.RbdPool, text);
        }

        var scheme = text.IndexOf("://", StringComparison.Ordinal);
        if (scheme > 0 && text[..scheme].All(char.IsAsciiLetterOrDigit))
        {
            var kind = text[..scheme].ToLowerInvariant() switch
            {
                "s3" => RepositoryKind.S3,
                "swift" => RepositoryKind.Swift,
                _ => throw new BackupException(BackupErrorKind.NotSupported, "RepositoryKindNotSupported",
                    $"'{text}': {text[..scheme]}:// repositories are not supported; use a directory (local or NFS), rbd:<pool>, s3://bucket[/prefix] or swift://container[/prefix].", text),
            };
            var target = ObjectStoreTarget.Parse(text); // a precise error for a bad bucket or prefix, before any connection
            // A URL that a registration names (a backup piped from a registered repository
            // carries the URL) uses that registration's connection.
            if (useRegistrations && RegistrationFor(registry, kind, target, text) is { } byUri)
            {
                return FromRegistration(byUri, registry, resolvePath);
            }

            return new(kind, text);
        }

        var path = resolvePath(text);
        if (ObjectStoreTarget.IsInsideBookkeeping(path))
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidRepository",
                $"'{path}' is inside a repository's '{ObjectStoreTarget.BookkeepingSegment}' bookkeeping directory, which that repository's cleanup removes; choose a directory outside it.", text);
        }

        return new(RepositoryKind.File, path);
    }

    /// <summary>
    /// The registration whose location a typed (or piped) URL is; null when none is. Several (the
    /// same bucket at two endpoints, or duplicates registered before they were refused) are
    /// refused, naming them: silently taking one could write to, or delete from, the wrong store.
    /// </summary>
    private static Configuration.RegisteredRepository? RegistrationFor(Configuration.RepositoryRegistry registry, RepositoryKind kind, ObjectStoreTarget target, string text)
    {
        var matches = registry.Readable()
            .Where(r => r.Uri.StartsWith(kind == RepositoryKind.S3 ? "s3://" : "swift://", StringComparison.Ordinal) && ObjectStoreTarget.Parse(r.Uri) == target)
            .ToList();
        if (matches.Count > 1)
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "RepositoryUriAmbiguous",
                $"'{Configuration.RegisteredRepository.Show(text)}' is registered {matches.Count} times: {string.Join(", ", matches.Select(r => $"'{r.Name}' (endpoint {r.Endpoint})"))}; give the registered name instead of the URL.", text);
        }

        return matches.FirstOrDefault();
    }

    private static RepositoryLocation FromRegistration(Configuration.RegisteredRepository registered, Configuration.RepositoryRegistry registry, Func<string, string> resolvePath)
    {
        // The registered location itself, never resolved through the registrations again.
        var location = Parse(registered.Uri, resolvePath, registry, useRegistrations: false);
        if (location.Kind is not (RepositoryKind.S3 or RepositoryKind.Swift))
        {
            return location with { RegisteredName = registered.Name };
        }

        var secret = registry.GetSecret(registered)
            ?? throw new BackupException(BackupErrorKind.InvalidArgument, "RepositorySecretMissing",
                $"Registered repository '{registered.Name}' has no credential; register it again with -Credential or -SecretEnvironmentVariable.", registered.Name);
        return location with
        {
            RegisteredName = registered.Name,
            Connection = new ObjectStoreConnection(registered.Endpoint ?? string.Empty, registered.UserName ?? string.Empty, secret)
            {
                Region = registered.Region, AvailabilityZone = registered.AvailabilityZone,
                ProjectName = registered.ProjectName, UserDomain = registered.UserDomain, ProjectDomain = registered.ProjectDomain,
            },
        };
    }
}

/// <summary>The bucket/container and key prefix of an s3:// or swift:// location.</summary>
public sealed record ObjectStoreTarget(RepositoryKind Kind, string Container, string KeyPrefix)
{
    /// <summary>
    /// What Cinder's s3 and swift drivers use when no bucket/container is configured
    /// (backup_s3_store_bucket, backup_swift_container): <c>s3://</c> and <c>swift://</c> alone mean it.
    /// </summary>
    public const string CinderDefaultContainer = "volumebackups";

    /// <summary>BlockBackup's own bookkeeping (locks, leases, in-flight records) in every repository: no repository may live inside it.</summary>
    public const string BookkeepingSegment = ".blockbackup";

    /// <summary>The longest key prefix accepted (object names are at most 1024 bytes; a backup's own names take ~120).</summary>
    public const int MaxKeyPrefixLength = 512;

    public static ObjectStoreTarget Parse(string uri)
    {
        var scheme = uri.IndexOf("://", StringComparison.Ordinal);
        var kind = uri[..scheme].Equals("s3", StringComparison.OrdinalIgnoreCase) ? RepositoryKind.S3 : RepositoryKind.Swift;
        var rest = uri[(scheme + 3)..].TrimEnd('/');
        if (rest.Length == 0)
        {
            return new(kind, CinderDefaultContainer, string.Empty);
        }
        var slash = rest.IndexOf('/');
        var container = slash < 0 ? rest : rest[..slash];
        var prefix = slash < 0 ? string.Empty : rest[(slash + 1)..];
        // The rules registration applies (RegisteredRepository.Validate), so a typed URL is refused exactly where a registered one would be.
        if ((ContainerProblem(kind, container) ?? (prefix.Length > 0 ? PrefixProblem(prefix) : null)) is { } problem)
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidRepository",
                $"'{Shown(uri)}' is not a valid {uri[..scheme]} repository: {problem}; write {uri[..scheme]}://<{(kind == RepositoryKind.S3 ? "bucket" : "container")}>[/<prefix>].", uri);
        }

        return new(kind, container, prefix.Length == 0 ? string.Empty : prefix + "/");
    }

    /// <summary>
    /// Why a bucket (S3: 3-255 letters, digits, '.', '-' or '_', starting and ending with a letter or
    /// digit) or container (Swift: 1-256 of those, not '.' or '..', which a URL path would resolve)
    /// name cannot be used; null when it can.
    /// </summary>
    public static string? ContainerProblem(RepositoryKind kind, string container)
    {
        var plain = container.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.');
        return kind == RepositoryKind.S3
            ? plain && container.Length is >= 3 and <= 255 && char.IsAsciiLetterOrDigit(container[0]) && char.IsAsciiLetterOrDigit(container[^1]) ? null
                : $"'{Shown(container)}' is not a bucket name (3-255 letters, digits, '.', '-' or '_', starting and ending with a letter or digit)"
            : plain && container.Length is >= 1 and <= 256 && container is not ("." or "..") ? null
                : $"'{Shown(container)}' is not a container name (1-256 letters, digits, '.', '-' or '_', not '.' or '..')";
    }

    /// <summary>
    /// Why a key prefix (without its trailing '/') cannot be used; null when it can: '/'-separated
    /// names without empty, '.' or '..' parts, '\' or control characters, at most
    /// <see cref="MaxKeyPrefixLength"/> characters, and no <see cref="BookkeepingSegment"/> part (a
    /// repository inside another's bookkeeping would be wiped by that one's lock cleanup).
    /// </summary>
    public static string? PrefixProblem(string prefix) =>
        prefix.Length > MaxKeyPrefixLength ? $"the prefix is {prefix.Length} characters, more than {MaxKeyPrefixLength}"
        : ObjectNames.IsInvalid(prefix) ? $"the prefix '{Shown(prefix)}' has an empty, '.' or '..' part, a '\\' or a control character"
        : HasBookkeepingSegment(prefix, '/') ? $"the prefix '{Shown(prefix)}' is inside a repository's '{BookkeepingSegment}/' bookkeeping, which that repository's cleanup removes"
        : null;

    /// <summary>Whether a prefix has a <see cref="BookkeepingSegment"/> part (any letter case: stores and file systems may fold it).</summary>
    public static bool HasBookkeepingSegment(string path, params char[] separators) =>
        path.Split(separators).Any(IsBookkeeping);

    /// <summary>
    /// Whether a directory is a repository's bookkeeping or inside it: a <see cref="BookkeepingSegment"/>
    /// part that is the last one or is followed by what BlockBackup keeps there (locks, readers,
    /// inflight). Narrower than for prefixes, so that a directory merely named .blockbackup (say
    /// ~/.blockbackup/backups) stays usable.
    /// </summary>
    public static bool IsInsideBookkeeping(string directory)
    {
        var parts = directory.Split(['/', Path.DirectorySeparatorChar], StringSplitOptions.RemoveEmptyEntries);
        return parts.Select((p, i) => IsBookkeeping(p) && (i == parts.Length - 1 || parts[i + 1] is "locks" or "readers" or "inflight")).Any(b => b);
    }

    private static bool IsBookkeeping(string part) => part.Equals(BookkeepingSegment, StringComparison.OrdinalIgnoreCase);

    /// <summary>A value as an error shows it: bounded, control characters escaped.</summary>
    private static string Shown(string text) => Configuration.RegisteredRepository.Show(text);
}

/// <summary>
/// The endpoint and credentials of an object store. The secret is never shown
/// (<see cref="ToString"/> masks it). S3: <see cref="Endpoint"/> is the service URL and
/// <see cref="UserName"/> the access key id; Swift: <see cref="Endpoint"/> is the auth URL (v1
/// <c>…/auth/1.0</c> or Keystone <c>…/v3</c>) and <see cref="UserName"/> the Swift user.
/// </summary>
public sealed record ObjectStoreConnection(string Endpoint, string UserName, string Secret)
{
    public string? Region { get; init; }

    /// <summary>Cinder's storage_availability_zone in new backups' names (default nova).</summary>
    public string? AvailabilityZone { get; init; }

    /// <summary>Keystone v3 only.</summary>
    public string? ProjectName { get; init; }

    public string? UserDomain { get; init; }

    public string? ProjectDomain { get; init; }

    public override string ToString() => $"{Endpoint} as {UserName}";

    /// <summary>
    /// The connection the environment describes, as the standard clients read it. S3:
    /// AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    /// AWS_REGION or AWS_DEFAULT_REGION. Swift (python-swiftclient's names): ST_AUTH, ST_USER,
    /// ST_KEY for auth v1, else OS_AUTH_URL, OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME,
    /// OS_USER_DOMAIN_NAME, OS_PROJECT_DOMAIN_NAME, OS_REGION_NAME for Keystone.
    /// </summary>
    public static ObjectStoreConnection FromEnvironment(RepositoryKind kind, string location)
    {
        static string? Env(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : null;
        if (kind == RepositoryKind.S3)
        {
            var endpoint = Env("AWS_ENDPOINT_URL_S3") ?? Env("AWS_ENDPOINT_URL");
            var key = Env("AWS_ACCESS_KEY_ID");
            var secret = Env("AWS_SECRET_ACCESS_KEY");
            if (endpoint is null || key is null || secret is null)
            {
                throw Missing(location, "AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3), AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", endpoint, key, secret);
            }

            return new(endpoint, key, secret) { Region = Env("AWS_REGION") ?? Env("AWS_DEFAULT_REGION") };
        }

        if (Env("ST_AUTH") is { } v1)
        {
            var user = Env("ST_USER");
            var key = Env("ST_KEY");
            if (user is null || key is null)
            {
                throw Missing(location, "ST_AUTH, ST_USER and ST_KEY", v1, user, key);
            }

            return new(v1, user, key);
        }

        var auth = Env("OS_AUTH_URL");
        var name = Env("OS_USERNAME");
        var password = Env("OS_PASSWORD");
        if (auth is null || name is null || password is null)
        {
            throw Missing(location, "ST_AUTH, ST_USER and ST_KEY (auth v1) or OS_AUTH_URL, OS_USERNAME, OS_PASSWORD and OS_PROJECT_NAME (Keystone)", auth, name, password);
        }

        return new(auth, name, password)
        {
            ProjectName = Env("OS_PROJECT_NAME"), UserDomain = Env("OS_USER_DOMAIN_NAME"), ProjectDomain = Env("OS_PROJECT_DOMAIN_NAME"), Region = Env("OS_REGION_NAME"),
        };
    }

    private static BackupException Missing(string location, string variables, params string?[] values) =>
        new(BackupErrorKind.InvalidArgument, "ObjectStoreConnectionMissing",
            $"'{location}' needs an endpoint and credentials: register it (Register-BackupRepository -Name <name> -Uri {location} -Endpoint <url> -Credential <credential>) and use -Repository <name>, or set {variables} ({values.Count(v => v is null)} of them missing).", location);
}

/// <summary>Opens any repository kind from its location, the one place that knows the kinds.</summary>
public static class RepositoryFactory
{
    /// <param name="location">The parsed location.</param>
    /// <param name="ceph">The Ceph connection to use for rbd: pools (called only for them).</param>
    /// <param name="create">Create a missing file repository, or let a missing bucket or container be created (backups do; every other verb refuses a missing one).</param>
    public static IBackupRepository Open(RepositoryLocation location, Func<RbdClient> ceph, bool create = false) => location.Kind switch
    {
        RepositoryKind.RbdPool => RbdBackupPool.Open(ceph(), location.Value),
        RepositoryKind.S3 or RepositoryKind.Swift => OpenObjectStore(location, create),
        _ => BackupRepository.Open(location.Value, create),
    };

    /// <summary>The bucket or container must exist unless <paramref name="create"/> (a backup, whose first put creates it).</summary>
    private static ObjectStoreRepository OpenObjectStore(RepositoryLocation location, bool create)
    {
        var target = ObjectStoreTarget.Parse(location.Value);
        var connection = location.Connection ?? ObjectStoreConnection.FromEnvironment(location.Kind, location.Value);
        IObjectStore store = location.Kind == RepositoryKind.S3
            ? S3StoreLoader.Create(new S3StoreOptions(connection.Endpoint, target.Container, connection.UserName, connection.Secret, connection.Region ?? "us-east-1"))
            : new SwiftObjectStore(new SwiftStoreOptions(connection.Endpoint, connection.UserName, connection.Secret, target.Container)
            {
                ProjectName = connection.ProjectName,
                UserDomain = connection.UserDomain ?? "Default",
                ProjectDomain = connection.ProjectDomain ?? "Default",
                Region = connection.Region,
            });
        var repository = new ObjectStoreRepository(store, location.Kind, target.Container, target.KeyPrefix, connection.AvailabilityZone);
        if (!create)
        {
            try
            {
                repository.RequireContainer();
            }
            catch
            {
                repository.Dispose();
                throw;
            }
        }

        return repository;
    }
}
