using System.Globalization;
using System.Text;
using BlockBackup.Engine.Configuration;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Repository;
using Newtonsoft.Json;
using Newtonsoft.Json.Linq;

namespace BlockBackup.Engine.Policies;

/// <summary>
/// The node-local policy store: <c>policies/&lt;name&gt;.json</c> (plain JSON a person can read and
/// edit; written atomically; validated on every read, unknown fields refused) and
/// <c>state/&lt;name&gt;.json</c> (the run history the runner keeps) under the configuration
/// directory (<see cref="Configuration.NodeConfiguration"/>). Every name is checked
/// (<see cref="ConfigurationName"/>) before a path is built from it, and every file and folder is
/// read and written only where nobody but this user or root can change it
/// (<see cref="ConfigurationFiles"/>: ConfigurationNotTrusted otherwise).
/// </summary>
public sealed class PolicyStore(string directory)
{
    private const int HistoryKept = 100;

    public string Directory { get; } = Path.GetFullPath(directory);

    private const string PoliciesFolder = "policies";
    private const string StateFolder = "state";

    public string PolicyPath(string name) => Path.Combine(Directory, PoliciesFolder, CheckedName(name) + ".json");

    public string StatePath(string name) => Path.Combine(Directory, StateFolder, CheckedName(name) + ".json");

    public string LockPath(string name) => Path.Combine(Directory, StateFolder, CheckedName(name) + ".lock");

    /// <summary>
    /// <paramref name="name"/> when it can name a policy (<see cref="ConfigurationName"/>); InvalidBackupPolicy
    /// otherwise. Every path is built through this, so no name reaches a file outside the store.
    /// </summary>
    public static string CheckedName(string name) =>
        ConfigurationName.IsValid(name)
            ? name
            : throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidBackupPolicy",
                $"Backup policy '{Configuration.RegisteredRepository.Show(name)}', Name: it is not a policy name ({ConfigurationName.Rule}).", name);

    /// <summary>The stored policies' names: every *.json file of policies/ (one whose name is not a policy name fails when it is read, naming it).</summary>
    public IReadOnlyList<string> Names()
    {
        ConfigurationFiles.CheckDirectory(Directory, PoliciesFolder);
        var dir = Path.Combine(Directory, PoliciesFolder);
        return System.IO.Directory.Exists(dir)
            ? System.IO.Directory.EnumerateFiles(dir, "*.json").Select(f => Path.GetFileNameWithoutExtension(f)!).Where(n => !n.StartsWith(".tmp-", StringComparison.Ordinal)).Order(StringComparer.OrdinalIgnoreCase).ToList()
            : [];
    }

    public bool Exists(string name) => File.Exists(PolicyPath(name));

    public BackupPolicy Get(string name)
    {
        var path = PolicyPath(name);
        using var stream = ConfigurationFiles.OpenRead(Directory, path, out _)
            ?? throw new BackupException(BackupErrorKind.NotFound, "BackupPolicyNotFound", $"There is no backup policy '{name}' in '{Directory}'.", name);
        return Read(stream, path, name);
    }

    /// <summary>Writes a validated policy (create-only unless <paramref name="replace"/>).</summary>
    public void Save(BackupPolicy policy, bool replace)
    {
        policy.Validate();
        if (!replace && Exists(policy.Name))
        {
            throw new BackupException(BackupErrorKind.InvalidOperation, "BackupPolicyExists", $"A backup policy '{policy.Name}' exists already; change it with Set-BackupPolicy.", policy.Name);
        }

        WriteJson(PoliciesFolder, PolicyPath(policy.Name), ToJson(policy));
    }

    public void Remove(string name)
    {
        var (policy, state, held) = (PolicyPath(name), StatePath(name), LockPath(name));
        ConfigurationFiles.CheckDirectory(Directory, PoliciesFolder);
        ConfigurationFiles.CheckDirectory(Directory, StateFolder);
        AtomicFile.TryDelete(policy);
        AtomicFile.TryDelete(state);
        AtomicFile.TryDelete(held);
    }

    public PolicyState State(string name)
    {
        var path = StatePath(name);
        using var stream = ConfigurationFiles.OpenRead(Directory, path, out _);
        return stream is null ? new PolicyState(null, []) : PolicyState.Read(stream);
    }

    public void SaveState(string name, PolicyState state) => WriteJson(StateFolder, StatePath(name), state.ToJson(HistoryKept));

    /// <summary>Exclusive use of a policy on this node: an OS file lock, released when the process ends however it ends.</summary>
    public FileStream? TryLock(string name)
    {
        var path = LockPath(name);
        ConfigurationFiles.CreateDirectory(Directory, StateFolder);
        try
        {
            return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException)
        {
            return null;
        }
    }

    private void WriteJson(string folder, string path, JObject json)
    {
        ConfigurationFiles.CreateDirectory(Directory, folder);
        ConfigurationFiles.Write(path, Encoding.UTF8.GetBytes(json.ToString(Formatting.Indented) + "\n"));
    }

    private static readonly string[] Fields =
    [
        "name", "path", "rbdImage", "repository", "schedule", "timeZone", "fullEvery", "maxChainLength", "keepLast", "keepHourly", "keepDaily",
        "keepWeekly", "keepMonthly", "keepYearly", "keepWithin", "compression", "verify", "verifyPercent", "cephConfig", "cephUser", "cephKeyring", "createdUtc",
        "retainScope",
    ];

    public static JObject ToJson(BackupPolicy p)
    {
        var o = new JObject { ["name"] = p.Name, ["path"] = new JArray(p.Path), ["rbdImage"] = new JArray(p.RbdImage), ["repository"] = p.Repository, ["schedule"] = p.Schedule };
        void Add(string key, JToken? value)
        {
            if (value is not null && value.Type != JTokenType.Null && value is not JValue { Value: null })
            {
                o[key] = value;
            }
        }

        Add("timeZone", p.TimeZone);
        Add("fullEvery", p.FullEvery?.ToString("c", CultureInfo.InvariantCulture));
        Add("maxChainLength", p.MaxChainLength);
        foreach (var (key, value) in new[] { ("keepLast", p.KeepLast), ("keepHourly", p.KeepHourly), ("keepDaily", p.KeepDaily), ("keepWeekly", p.KeepWeekly), ("keepMonthly", p.KeepMonthly), ("keepYearly", p.KeepYearly) })
        {
            if (value != 0)
            {
                o[key] = value;
            }
        }

        Add("keepWithin", p.KeepWithin?.ToString("c", CultureInfo.InvariantCulture));
        o["compression"] = p.Compression;
        o["verify"] = p.Verify;
        Add("verifyPercent", p.VerifyPercent);
        Add("cephConfig", p.CephConfig);
        Add("cephUser", p.CephUser);
        Add("cephKeyring", p.CephKeyring);
        if (p.RetainScope != RetainScope.Policy)
        {
            o["retainScope"] = p.RetainScope.ToString();
        }

        o["createdUtc"] = PolicyTime.Format(p.CreatedUtc);
        return o;
    }

    /// <summary>Reads and validates a policy file; every problem names the file and the field.</summary>
    public static BackupPolicy Read(Stream stream, string path, string expectedName)
    {
        JObject o;
        try
        {
            using var reader = new JsonTextReader(new StreamReader(stream, new UTF8Encoding(false, true))) { DateParseHandling = DateParseHandling.None };
            o = JObject.Load(reader);
        }
        catch (Exception ex) when (ex is JsonException or DecoderFallbackException or InvalidCastException)
        {
            throw Bad(path, expectedName, null, $"it is not valid JSON ({ex.Message}). Fix it, or remove the policy with Remove-BackupPolicy and create it again");
        }

        foreach (var property in o.Properties())
        {
            if (!Fields.Contains(property.Name, StringComparer.Ordinal))
            {
                throw Bad(path, expectedName, property.Name, $"'{property.Name}' is not a policy field (known: {string.Join(", ", Fields)})");
            }
        }

        T Field<T>(string key, T fallback)
        {
            var token = o[key];
            if (token is null || token.Type == JTokenType.Null)
            {
                return fallback;
            }

            try
            {
                return token.ToObject<T>()!;
            }
            catch (Exception ex) when (ex is JsonException or ArgumentException or FormatException or InvalidCastException or OverflowException)
            {
                throw Bad(path, expectedName, key, $"'{token}' is not a {typeof(T).Name}");
            }
        }

        TimeSpan? Span(string key)
        {
            var text = Field<string?>(key, null);
            if (text is null)
            {
                return null;
            }

            return TimeSpan.TryParse(text, CultureInfo.InvariantCulture, out var span) ? span : throw Bad(path, expectedName, key, $"'{text}' is not a time span (d.hh:mm:ss)");
        }

        var policy = new BackupPolicy
        {
            Name = Field<string?>("name", null) ?? throw Bad(path, expectedName, "name", "it is missing"),
            Path = Field<string[]>("path", []),
            RbdImage = Field<string[]>("rbdImage", []),
            Repository = Field<string?>("repository", null) ?? throw Bad(path, expectedName, "repository", "it is missing"),
            Schedule = Field<string?>("schedule", null) ?? throw Bad(path, expectedName, "schedule", "it is missing"),
            TimeZone = Field<string?>("timeZone", null),
            FullEvery = Span("fullEvery"),
            MaxChainLength = Field<int?>("maxChainLength", null),
            KeepLast = Field("keepLast", 0),
            KeepHourly = Field("keepHourly", 0),
            KeepDaily = Field("keepDaily", 0),
            KeepWeekly = Field("keepWeekly", 0),
            KeepMonthly = Field("keepMonthly", 0),
            KeepYearly = Field("keepYearly", 0),
            KeepWithin = Span("keepWithin"),
            Compression = Field("compression", "zlib"),
            Verify = Field("verify", false),
            VerifyPercent = Field<int?>("verifyPercent", null),
            CephConfig = Field<string?>("cephConfig", null),
            CephUser = Field<string?>("cephUser", null),
            CephKeyring = Field<string?>("cephKeyring", null),
            RetainScope = Field<string?>("retainScope", null) is not { } scope ? RetainScope.Policy
                : Enum.TryParse<RetainScope>(scope, ignoreCase: true, out var parsed) && Enum.IsDefined(parsed) && !scope.Any(char.IsAsciiDigit) ? parsed
                : throw Bad(path, expectedName, "retainScope", $"'{scope}' is not Policy or Volume"),
            CreatedUtc = PolicyTime.TryParse(Field<string?>("createdUtc", null), out var created) ? created : File.GetCreationTimeUtc(path),
        };
        if (!string.Equals(policy.Name, expectedName, StringComparison.Ordinal))
        {
            throw Bad(path, expectedName, "name", $"'{policy.Name}' differs from the file's name; rename one of them");
        }

        try
        {
            policy.Validate();
        }
        catch (BackupException ex)
        {
            throw new BackupException(ex.Kind, ex.ErrorId, $"{ex.Message} (in '{path}')", expectedName, ex);
        }

        return policy;
    }

    private static BackupException Bad(string path, string name, string? field, string what) =>
        new(BackupErrorKind.InvalidData, "InvalidBackupPolicy", $"Backup policy '{name}' ('{path}'){(field is null ? "" : $", field {field}")}: {what}.", name);
}
