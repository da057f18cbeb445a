using Newtonsoft.Json.Linq;

namespace BlockBackup.Engine.Policies;

/// <summary>What one run of a policy did for one volume.</summary>
public sealed record PolicyRunRecord
{
    public required string Policy { get; init; }
    /// <summary>The volume: a resolved path or an RBD image spec.</summary>
    public required string Volume { get; init; }
    public required DateTimeOffset StartedUtc { get; init; }
    public required TimeSpan Duration { get; init; }
    /// <summary>The backup made (null when the run was skipped or failed).</summary>
    public Guid? BackupId { get; init; }
    public BackupType? Type { get; init; }
    /// <summary>Why full or incremental, or why the run was skipped.</summary>
    public string? Reason { get; init; }
    /// <summary>Whether the new backup was verified and found valid (null when verification was not asked for).</summary>
    public bool? Verified { get; init; }
    public IReadOnlyList<Guid> Removed { get; init; } = [];
    public bool Skipped { get; init; }
    public bool Succeeded => Error is null && !Skipped;
    public string? Error { get; init; }
    public string? ErrorId { get; init; }

    public JObject ToJson() => new()
    {
        ["volume"] = Volume,
        ["started"] = PolicyTime.Format(StartedUtc),
        ["seconds"] = Math.Round(Duration.TotalSeconds, 3),
        ["backup"] = BackupId?.ToString("D"),
        ["type"] = Type?.ToString(),
        ["reason"] = Reason,
        ["verified"] = Verified,
        ["removed"] = new JArray(Removed.Select(r => r.ToString("D"))),
        ["skipped"] = Skipped,
        ["error"] = Error,
        ["errorId"] = ErrorId,
    };

    public static PolicyRunRecord FromJson(string policy, JObject o) => new()
    {
        Policy = policy,
        Volume = (string?)o["volume"] ?? string.Empty,
        StartedUtc = PolicyTime.TryParse((string?)o["started"], out var s) ? s : DateTimeOffset.MinValue,
        Duration = TimeSpan.FromSeconds((double?)o["seconds"] ?? 0),
        BackupId = Guid.TryParse((string?)o["backup"], out var b) ? b : null,
        Type = Enum.TryParse<BackupType>((string?)o["type"], out var t) ? t : null,
        Reason = (string?)o["reason"],
        Verified = (bool?)o["verified"],
        Removed = (o["removed"] as JArray)?.Select(r => Guid.TryParse((string?)r, out var g) ? g : Guid.Empty).Where(g => g != Guid.Empty).ToList() ?? [],
        Skipped = (bool?)o["skipped"] ?? false,
        Error = (string?)o["error"],
        ErrorId = (string?)o["errorId"],
    };
}

/// <summary>A policy's run history on this node: when it last ran, and the records of recent runs.</summary>
public sealed record PolicyState(DateTimeOffset? LastRunUtc, IReadOnlyList<JObject> History)
{
    /// <summary>
    /// Reads a run history. Times stay text until parsed here as ISO 8601 with their offset:
    /// Newtonsoft's default date handling would turn them into local DateTimes first, and the run
    /// would read back shifted by the machine's UTC offset.
    /// </summary>
    public static PolicyState Read(Stream stream)
    {
        try
        {
            using var reader = new Newtonsoft.Json.JsonTextReader(new StreamReader(stream)) { DateParseHandling = Newtonsoft.Json.DateParseHandling.None };
            var o = JObject.Load(reader);
            return new PolicyState(PolicyTime.TryParse((string?)o["lastRun"], out var last) ? last : null,
                (o["history"] as JArray)?.OfType<JObject>().ToList() ?? []);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or Newtonsoft.Json.JsonException or InvalidCastException or FormatException)
        {
            return new PolicyState(null, []);   // never ran, or a damaged history: the policy is simply due
        }
    }

    public IEnumerable<PolicyRunRecord> Records(string policy) => History.Select(h => PolicyRunRecord.FromJson(policy, h));

    public JObject ToJson(int keep) => new()
    {
        ["lastRun"] = LastRunUtc is { } last ? PolicyTime.Format(last) : null,
        ["history"] = new JArray(History.TakeLast(keep)),
    };
}
