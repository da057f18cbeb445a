using System.Globalization;
using System.Security.AccessControl;
using System.Security.Principal;
using System.Text;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Repository;
using Newtonsoft.Json;
using Newtonsoft.Json.Linq;

namespace BlockBackup.Engine.Configuration;

/// <summary>
/// The node's registered repositories: <c>repositories/&lt;name&gt;.json</c> under the configuration
/// directory (<see cref="NodeConfiguration"/>; plain JSON, written atomically, validated on every
/// read, unknown fields refused) and, for a stored credential, <c>repositories/&lt;name&gt;.secret</c>.
/// On Unix the directory is created 0700 and the secret file 0600 (never wider: it is written under
/// a new temporary name with that mode and renamed over the old one, and a secret file that other
/// users may read is refused). On Windows the secret is encrypted with DPAPI for the current user
/// and its file is readable by that user only. Names are case-insensitive. No method logs, returns
/// in a message or otherwise prints a secret.
/// </summary>
public sealed class RepositoryRegistry
{
    private const string JsonExtension = ".json";
    private const string SecretExtension = ".secret";
    private const int MaxRegistrationBytes = 64 * 1024;
    private const int MaxSecretBytes = 16 * 1024;
    private const string RepositoriesFolder = "repositories";

    private const UnixFileMode FileMode0600 = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private const UnixFileMode GroupOrOther = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute |
                                              UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    private static readonly string[] Fields =
    [
        "name", "uri", "endpoint", "userName", "region", "availabilityZone", "projectName", "userDomain", "projectDomain",
        "credentialSource", "secretEnvironmentVariable", "registeredUtc",
    ];

    /// <summary>The registry of the node's configuration directory (BLOCKBACKUP_CONFIG_DIR or the platform default).</summary>
    public RepositoryRegistry()
        : this(NodeConfiguration.Directory())
    {
    }

    /// <param name="configurationDirectory">The configuration directory; the registry is its <c>repositories</c> folder.</param>
    public RepositoryRegistry(string configurationDirectory)
    {
        ConfigurationDirectory = Path.GetFullPath(configurationDirectory);
        RepositoriesDirectory = Path.Combine(ConfigurationDirectory, RepositoriesFolder);
    }

    public string ConfigurationDirectory { get; }

    public string RepositoriesDirectory { get; }

    /// <summary>
    /// Whether <paramref name="name"/> can name a repository: the rule of every configuration file
    /// name (<see cref="ConfigurationName"/>), so never '/', '\', ':' or a URL either: a name is
    /// never mistaken for a location.
    /// </summary>
    public static bool IsValidName(string? name) => ConfigurationName.IsValid(name);

    /// <summary>The file that holds the registration of <paramref name="name"/> (as registered, when it is).</summary>
    public string RegistrationPath(string name) => Path.Combine(RepositoriesDirectory, CheckedName(name) + JsonExtension);

    /// <summary>The file that holds the stored secret of <paramref name="name"/>.</summary>
    public string SecretPath(string name) => Path.Combine(RepositoriesDirectory, CheckedName(name) + SecretExtension);

    /// <summary>The registered names, sorted (files that are not valid names, and temporary files, are not registrations).</summary>
    public IReadOnlyList<string> Names()
    {
        ConfigurationFiles.CheckDirectory(ConfigurationDirectory, RepositoriesFolder);
        if (!System.IO.Directory.Exists(RepositoriesDirectory))
        {
            return [];
        }

        return System.IO.Directory.EnumerateFiles(RepositoriesDirectory, "*" + JsonExtension)
            .Select(f => Path.GetFileName(f)[..^JsonExtension.Length])
            .Where(IsValidName)
            .Order(StringComparer.OrdinalIgnoreCase)
            .ToList();
    }

    /// <summary>Whether <paramref name="name"/> is registered (in any letter case).</summary>
    public bool Exists(string name) => Find(name) is not null;

    /// <summary>Every registration; a damaged one throws (RepositoryRegistrationInvalid), naming its file.</summary>
    public IReadOnlyList<RegisteredRepository> List() => Names().Select(Get).ToList();

    /// <summary>
    /// Refuses (RepositoryLocationAlreadyRegistered, naming it) a registration whose location
    /// another name already has: one location, one name, so that a typed s3://… URL or a piped
    /// backup's location always means one registration. Re-registering the same name is not refused.
    /// </summary>
    public void RefuseRegisteredLocation(RegisteredRepository repository)
    {
        var others = Readable().Where(r => !string.Equals(r.Name, repository.Name, StringComparison.OrdinalIgnoreCase)).ToList();
        // Inside another registered directory's bookkeeping (any part of it: that repository owns it).
        if (others.FirstOrDefault(r => r.IsInBookkeepingOf(repository)) is { } outer)
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidRepositoryUri",
                $"Repository '{repository.Name}', Uri: '{RegisteredRepository.Show(repository.Uri)}' is inside the bookkeeping of registered repository '{outer.Name}' ('{RegisteredRepository.Show(outer.Uri)}'), which that repository's cleanup removes; choose a location outside it.", repository.Name);
        }

        if (others.FirstOrDefault(r => r.SameLocation(repository)) is { } same)
        {
            throw new BackupException(BackupErrorKind.InvalidOperation, "RepositoryLocationAlreadyRegistered",
                $"'{RegisteredRepository.Show(repository.Uri)}'{(repository.Endpoint is null ? "" : $" at '{RegisteredRepository.Show(repository.Endpoint)}'")} is registered already as '{same.Name}' ('{RegistrationPath(same.Name)}'); " +
                $"use that name, or Unregister-BackupRepository -Name {same.Name} first (one location has one name, so that its URL always means one registration).", repository.Name);
        }
    }

    /// <summary>Every registration that can be read and is valid; a damaged one is skipped (List names it when asked).</summary>
    public IReadOnlyList<RegisteredRepository> Readable()
    {
        var readable = new List<RegisteredRepository>();
        foreach (var name in Names())
        {
            try
            {
                if (TryGet(name) is { } registered)
                {
                    registered.Validate();
                    readable.Add(registered);
                }
            }
            catch (BackupException)
            {
                // Damaged: it names no usable location.
            }
        }

        return readable;
    }

    /// <summary>The registration of <paramref name="name"/>, or null when there is none (or the name cannot be one).</summary>
    public RegisteredRepository? TryGet(string name) => Find(name) is { } registered ? Read(registered) : null;

    /// <summary>The registration of <paramref name="name"/>; RepositoryNotRegistered when there is none.</summary>
    public RegisteredRepository Get(string name) =>
        TryGet(name) ?? throw new BackupException(BackupErrorKind.NotFound, "RepositoryNotRegistered",
            $"No repository '{RegisteredRepository.Show(name)}' is registered in '{RepositoriesDirectory}'; Get-BackupRepository lists them, Register-BackupRepository adds one.", name);

    /// <summary>
    /// Validates and stores a registration and its secret, and returns it as stored (with
    /// <see cref="RegisteredRepository.RegisteredUtc"/> set to now). An existing name (in any letter
    /// case) is refused (RepositoryAlreadyRegistered) unless <paramref name="force"/>, which replaces
    /// it and its secret.
    /// </summary>
    /// <param name="repository">The registration.</param>
    /// <param name="secret">The secret to store: required with <see cref="RepositoryCredentialSource.Stored"/>, refused otherwise.</param>
    /// <param name="force">Replace an existing registration of the name.</param>
    public RegisteredRepository Register(RegisteredRepository repository, string? secret, bool force)
    {
        ArgumentNullException.ThrowIfNull(repository);
        repository.Validate();
        if (repository.CredentialSource == RepositoryCredentialSource.Stored)
        {
            if (string.IsNullOrEmpty(secret))
            {
                throw new BackupException(BackupErrorKind.InvalidArgument, "RepositoryCredentialRequired",
                    $"Repository '{repository.Name}', Credential: the credential's secret (password) is empty.", repository.Name);
            }

            if (secret.Any(char.IsControl) || Encoding.UTF8.GetByteCount(secret) > 4096)
            {
                throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidRepositoryParameter",
                    $"Repository '{repository.Name}', Credential: the secret must be at most 4096 bytes without control characters.", repository.Name);
            }
        }
        else if (secret is not null)
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidRepositoryParameter",
                $"Repository '{repository.Name}': a secret is stored only with CredentialSource Stored (this one is {repository.CredentialSource}).", repository.Name);
        }

        if (Find(repository.Name) is { } existing)
        {
            if (!force)
            {
                throw new BackupException(BackupErrorKind.InvalidOperation, "RepositoryAlreadyRegistered",
                    $"A repository '{existing}' is registered already ('{RegistrationPath(existing)}'); use -Force to replace it, or Unregister-BackupRepository first.", repository.Name);
            }

            if (!string.Equals(existing, repository.Name, StringComparison.Ordinal))
            {
                // Another letter case: remove it first, so no two files name one repository.
                Unregister(existing);
            }
        }

        RefuseRegisteredLocation(repository);
        var stored = repository with { RegisteredUtc = DateTimeOffset.UtcNow };
        CreateDirectory();
        if (secret is not null)
        {
            WriteSecret(SecretPath(stored.Name), secret);
        }

        var path = RegistrationPath(stored.Name);
        ConfigurationFiles.Write(path, Encoding.UTF8.GetBytes(ToJson(stored).ToString(Formatting.Indented) + "\n"));
        if (secret is null)
        {
            DeleteIfExists(SecretPath(stored.Name));
        }

        AtomicFile.SyncDirectory(RepositoriesDirectory);
        return stored;
    }

    /// <summary>
    /// Removes a registration and its stored secret (a damaged registration too); false when
    /// <paramref name="name"/> is not registered. Failures to delete are thrown, never ignored: a
    /// secret must not stay behind unnoticed.
    /// </summary>
    public bool Unregister(string name)
    {
        if (Find(name) is not { } registered)
        {
            return false;
        }

        DeleteIfExists(SecretPath(registered));
        DeleteIfExists(RegistrationPath(registered));
        AtomicFile.SyncDirectory(RepositoriesDirectory);
        return true;
    }

    /// <summary>
    /// The secret of <paramref name="repository"/> (S3 secret access key, Swift key or password):
    /// from its stored secret file or from its environment variable in this process; null when it
    /// takes no credential. Absent: RepositorySecretMissing, naming the file or the variable.
    /// </summary>
    public string? GetSecret(RegisteredRepository repository)
    {
        ArgumentNullException.ThrowIfNull(repository);
        switch (repository.CredentialSource)
        {
            case RepositoryCredentialSource.None:
                return null;
            case RepositoryCredentialSource.Environment:
                var variable = repository.SecretEnvironmentVariable;
                if (string.IsNullOrEmpty(variable))
                {
                    throw Invalid(RegistrationPath(repository.Name), repository.Name, "its credential comes from the environment but it names no variable");
                }

                return System.Environment.GetEnvironmentVariable(variable) is { Length: > 0 } value
                    ? value
                    : throw new BackupException(BackupErrorKind.NotFound, "RepositorySecretMissing",
                        $"Repository '{repository.Name}' takes its secret from the environment variable {variable}, which is not set (or empty) in this process. Set it where the repository is used (for example in the scheduled task's or runbook's environment).",
                        repository.Name);
            case RepositoryCredentialSource.Stored:
                return ReadSecret(repository.Name);
            default:
                throw Invalid(RegistrationPath(repository.Name), repository.Name, $"its credential source {(int)repository.CredentialSource} is not None, Stored or Environment");
        }
    }

    /// <summary>The registered name equal to <paramref name="name"/> ignoring case, or null.</summary>
    private string? Find(string name) =>
        IsValidName(name) ? Names().FirstOrDefault(n => string.Equals(n, name, StringComparison.OrdinalIgnoreCase)) : null;

    private static string CheckedName(string name) =>
        IsValidName(name)
            ? name
            : throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidRepositoryName",
                $"'{RegisteredRepository.Show(name)}' is not a repository name: 1-64 letters, digits, '-', '_' or '.', not starting with '.'.", name);

    /// <summary>The registry's folder (0700), refused when another user could change it or what is above it.</summary>
    private void CreateDirectory() => ConfigurationFiles.CreateDirectory(ConfigurationDirectory, RepositoriesFolder);

    private static void DeleteIfExists(string path)
    {
        if (File.Exists(path))
        {
            File.Delete(path);
        }
    }

    private static void WriteSecret(string path, string secret)
    {
        var plain = Encoding.UTF8.GetBytes(secret);
        var content = plain;
        try
        {
            if (OperatingSystem.IsWindows())
            {
                content = WindowsDataProtection.Protect(plain);
            }

            ConfigurationFiles.Write(path, content, CreateSecretFile);
        }
        finally
        {
            Array.Clear(plain);
            if (!ReferenceEquals(content, plain))
            {
                Array.Clear(content);
            }
        }
    }

    /// <summary>A new file only its owner can read: mode 0600 on Unix; on Windows an ACL with the current user alone, not inherited.</summary>
    private static FileStream CreateSecretFile(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            return CreateWindowsSecretFile(path);
        }

        return new FileStream(path, new FileStreamOptions
        {
            Mode = FileMode.CreateNew,
            Access = FileAccess.Write,
            Share = FileShare.None,
            UnixCreateMode = FileMode0600,
        });
    }

    [System.Runtime.Versioning.SupportedOSPlatform("windows")]
    private static FileStream CreateWindowsSecretFile(string path)
    {
        var user = WindowsIdentity.GetCurrent().User ?? throw new InvalidOperationException("The current Windows user has no SID.");
        var security = new FileSecurity();
        security.SetAccessRuleProtection(isProtected: true, preserveInheritance: false);
        security.AddAccessRule(new FileSystemAccessRule(user, FileSystemRights.FullControl, AccessControlType.Allow));
        return new FileInfo(path).Create(FileMode.CreateNew, FileSystemRights.FullControl, FileShare.None, 4096, FileOptions.None, security);
    }

    private string ReadSecret(string name)
    {
        var path = SecretPath(name);
        byte[] content;
        try
        {
            // Opened without following a symbolic link, and judged (owner, type, mode) by the opened file itself.
            using var stream = ConfigurationFiles.OpenRead(ConfigurationDirectory, path, out var mode)
                ?? throw new BackupException(BackupErrorKind.NotFound, "RepositorySecretMissing",
                    $"Repository '{name}' has a stored credential, but its secret file '{path}' is missing. Register the repository again with Register-BackupRepository -Force -Credential.", name);
            if ((mode & GroupOrOther) != 0)
            {
                throw Invalid(path, name, $"other users may use the secret file (mode {Convert.ToString((int)mode, 8)}); run chmod 600 on it, or register the repository again with -Force");
            }

            if (stream.Length is 0 or > MaxSecretBytes)
            {
                throw Invalid(path, name, $"the secret file holds {stream.Length} bytes (expected 1 to {MaxSecretBytes})");
            }

            content = new byte[stream.Length];
            stream.ReadExactly(content);
        }
        catch (UnauthorizedAccessException ex)
        {
            throw new BackupException(BackupErrorKind.ReadError, "RepositorySecretUnreadable",
                $"Repository '{name}': this user cannot read its secret file '{path}' ({ex.Message}). Use the repository as the user who registered it.", name, ex);
        }

        byte[] plain = content;
        try
        {
            if (OperatingSystem.IsWindows())
            {
                try
                {
                    plain = WindowsDataProtection.Unprotect(content);
                }
                catch (System.ComponentModel.Win32Exception ex)
                {
                    throw new BackupException(BackupErrorKind.ReadError, "RepositorySecretUnreadable",
                        $"Repository '{name}': its secret file '{path}' cannot be decrypted by this user (DPAPI, error {ex.NativeErrorCode}); it was stored by another user or on another machine. Register the repository again as the user that uses it.", name, ex);
                }
            }

            string secret;
            try
            {
                secret = new UTF8Encoding(false, true).GetString(plain).TrimEnd('\r', '\n');
            }
            catch (DecoderFallbackException)
            {
                throw Invalid(path, name, "the secret file is not UTF-8 text");
            }

            return secret.Length > 0 ? secret : throw Invalid(path, name, "the secret file is empty");
        }
        finally
        {
            Array.Clear(content);
            if (!ReferenceEquals(plain, content))
            {
                Array.Clear(plain);
            }
        }
    }

    private static JObject ToJson(RegisteredRepository r)
    {
        var o = new JObject { ["name"] = r.Name, ["uri"] = r.Uri };
        void Add(string key, string? value)
        {
            if (value is not null)
            {
                o[key] = value;
            }
        }

        Add("endpoint", r.Endpoint);
        Add("userName", r.UserName);
        Add("region", r.Region);
        Add("availabilityZone", r.AvailabilityZone);
        Add("projectName", r.ProjectName);
        Add("userDomain", r.UserDomain);
        Add("projectDomain", r.ProjectDomain);
        o["credentialSource"] = r.CredentialSource.ToString();
        Add("secretEnvironmentVariable", r.SecretEnvironmentVariable);
        o["registeredUtc"] = r.RegisteredUtc.ToString("O", CultureInfo.InvariantCulture);
        return o;
    }

    /// <summary>Reads and validates a registration file; every problem is RepositoryRegistrationInvalid naming the file (and the field).</summary>
    private RegisteredRepository Read(string name)
    {
        var path = RegistrationPath(name);
        JObject o;
        try
        {
            // Opened without following a symbolic link, and judged (owner, type, mode) by the opened file itself.
            using var stream = ConfigurationFiles.OpenRead(ConfigurationDirectory, path, out _) ?? throw new FileNotFoundException(null, path);
            if (stream.Length > MaxRegistrationBytes)
            {
                throw Invalid(path, name, $"the file holds {stream.Length} bytes, more than a registration can ({MaxRegistrationBytes})");
            }

            using var reader = new JsonTextReader(new StreamReader(stream, new UTF8Encoding(false, true))) { DateParseHandling = DateParseHandling.None, MaxDepth = 8 };
            o = JObject.Load(reader);
            if (reader.Read() && reader.TokenType != JsonToken.Comment)
            {
                throw new JsonReaderException("there is more after the JSON object");
            }
        }
        catch (Exception ex) when (ex is JsonException or DecoderFallbackException or InvalidCastException)
        {
            throw Invalid(path, name, $"it is not a JSON object ({ex.Message})");
        }
        catch (FileNotFoundException)
        {
            // Unregistered meanwhile.
            throw new BackupException(BackupErrorKind.NotFound, "RepositoryNotRegistered", $"No repository '{name}' is registered in '{RepositoriesDirectory}'.", name);
        }

        foreach (var property in o.Properties())
        {
            if (!Fields.Contains(property.Name, StringComparer.Ordinal))
            {
                // The value is not shown: a secret put here by hand must not reach a log.
                throw Invalid(path, name, $"'{RegisteredRepository.Show(property.Name)}' is not a registration field (known: {string.Join(", ", Fields)}); a secret never belongs in this file");
            }
        }

        string? Text(string key)
        {
            var token = o[key];
            return token is null || token.Type == JTokenType.Null
                ? null
                : token.Type == JTokenType.String ? (string)token! : throw Invalid(path, name, $"field {key} is a {token.Type}, not a string");
        }

        var sourceText = Text("credentialSource") ?? nameof(RepositoryCredentialSource.None);
        if (!Enum.TryParse<RepositoryCredentialSource>(sourceText, ignoreCase: true, out var source) || !Enum.IsDefined(source) || sourceText.Any(char.IsDigit))
        {
            throw Invalid(path, name, $"field credentialSource is '{RegisteredRepository.Show(sourceText)}', not None, Stored or Environment");
        }

        var registeredText = Text("registeredUtc");
        DateTimeOffset registered;
        if (registeredText is null)
        {
            registered = File.GetLastWriteTimeUtc(path);
        }
        else if (!DateTimeOffset.TryParse(registeredText, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out registered))
        {
            throw Invalid(path, name, $"field registeredUtc is '{RegisteredRepository.Show(registeredText)}', not a date and time");
        }

        var repository = new RegisteredRepository
        {
            Name = Text("name") ?? throw Invalid(path, name, "field name is missing"),
            Uri = Text("uri") ?? throw Invalid(path, name, "field uri is missing"),
            Endpoint = Text("endpoint"),
            UserName = Text("userName"),
            Region = Text("region"),
            AvailabilityZone = Text("availabilityZone"),
            ProjectName = Text("projectName"),
            UserDomain = Text("userDomain"),
            ProjectDomain = Text("projectDomain"),
            CredentialSource = source,
            SecretEnvironmentVariable = Text("secretEnvironmentVariable"),
            RegisteredUtc = registered,
        };
        if (!string.Equals(repository.Name, name, StringComparison.Ordinal))
        {
            throw Invalid(path, name, $"field name is '{RegisteredRepository.Show(repository.Name)}', which differs from the file's name");
        }

        try
        {
            repository.Validate();
        }
        catch (BackupException ex)
        {
            throw Invalid(path, name, ex.Message.TrimEnd('.'), ex);
        }

        return repository;
    }

    private static BackupException Invalid(string path, string name, string what, Exception? inner = null) =>
        new(BackupErrorKind.InvalidData, "RepositoryRegistrationInvalid",
            $"The registration of repository '{RegisteredRepository.Show(name)}' ('{path}') is invalid: {what}. Fix the file, or register the repository again with Register-BackupRepository -Force (Unregister-BackupRepository removes it).",
            name, inner);
}
