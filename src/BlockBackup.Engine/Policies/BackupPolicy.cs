using BlockBackup.Engine.Errors;
using Cronos;

namespace BlockBackup.Engine.Policies;

/// <summary>Which backups of a volume a policy's retention rule applies to.</summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum RetainScope
{
    /// <summary>Only the backups the policy made (recorded in each backup): backups made by hand, by Cinder or by another policy are never removed by it.</summary>
    Policy,
    /// <summary>Every backup of the volume in the repository, whoever made it (the policy owns the volume's history).</summary>
    Volume,
}

/// <summary>
/// A named, declarative backup policy: which volumes, into which repository, when (a cron
/// expression), how often a full backup is made, what is kept, and whether new backups are
/// verified. Stored as plain JSON by <see cref="PolicyStore"/>; run by <see cref="PolicyRunner"/>.
/// </summary>
public sealed partial record BackupPolicy
{
    public required string Name { get; init; }
    /// <summary>Image files or block devices; wildcards are expanded at each run.</summary>
    public IReadOnlyList<string> Path { get; init; } = [];
    /// <summary>RBD images (pool/image or pool/namespace/image).</summary>
    public IReadOnlyList<string> RbdImage { get; init; } = [];
    /// <summary>A repository location as the cmdlets take it (a directory or rbd:&lt;pool&gt;).</summary>
    public required string Repository { get; init; }
    /// <summary>When the policy is due: a five-field cron expression (or six with seconds).</summary>
    public required string Schedule { get; init; }
    /// <summary>The schedule's time zone (IANA or Windows id); local time when null.</summary>
    public string? TimeZone { get; init; }
    /// <summary>Make a full backup when the last full is at least this old.</summary>
    public TimeSpan? FullEvery { get; init; }
    /// <summary>Make a full backup when the chain already has this many backups (the full included).</summary>
    public int? MaxChainLength { get; init; }
    public int KeepLast { get; init; }
    public int KeepHourly { get; init; }
    public int KeepDaily { get; init; }
    public int KeepWeekly { get; init; }
    public int KeepMonthly { get; init; }
    public int KeepYearly { get; init; }
    public TimeSpan? KeepWithin { get; init; }
    public string Compression { get; init; } = "zlib";
    /// <summary>Verify each new backup (its whole chain's data is not re-read: the new backup's objects and hash list).</summary>
    public bool Verify { get; init; }
    /// <summary>After each run, verify this share of the repository in rotation (Test-VolumeBackup -SamplePercent).</summary>
    public int? VerifyPercent { get; init; }
    public string? CephConfig { get; init; }
    public string? CephUser { get; init; }
    public string? CephKeyring { get; init; }
    /// <summary>Which of the volume's backups the policy's retention may remove: only its own (default) or all of them.</summary>
    public RetainScope RetainScope { get; init; } = RetainScope.Policy;
    /// <summary>When the policy was created: a policy that never ran is due at its first occurrence after this.</summary>
    public DateTimeOffset CreatedUtc { get; init; } = DateTimeOffset.UtcNow;

    public RetentionRule Retention => new()
    {
        KeepLast = KeepLast, KeepHourly = KeepHourly, KeepDaily = KeepDaily, KeepWeekly = KeepWeekly,
        KeepMonthly = KeepMonthly, KeepYearly = KeepYearly, KeepWithin = KeepWithin,
    };

    /// <summary>Refuses what cannot run, naming the policy and the field.</summary>
    public void Validate()
    {
        PolicyStore.CheckedName(Name ?? string.Empty);

        if (Path.Count == 0 && RbdImage.Count == 0)
        {
            throw Invalid("Path", "the policy names no volume: give -Path (image files or block devices) or -RbdImage");
        }

        if (string.IsNullOrWhiteSpace(Repository))
        {
            throw Invalid("Repository", "the repository is empty");
        }

        ParseSchedule();
        Zone();
        if (FullEvery is { } every && every <= TimeSpan.Zero)
        {
            throw Invalid("FullEvery", $"{every} is not a positive time span");
        }

        if (MaxChainLength is < 1)
        {
            throw Invalid("MaxChainLength", $"{MaxChainLength} is not at least 1 (1 means every backup is a full backup)");
        }

        if (VerifyPercent is < 1 or > 100)
        {
            throw Invalid("VerifyPercent", $"{VerifyPercent} is not 1 to 100");
        }

        if (!Engine.Compression.CompressionNames.TryParse(Compression, out _))
        {
            throw Invalid("Compression", $"'{Compression}' is not zlib, bz2, zstd or none");
        }

        try
        {
            Retention.Validate();
        }
        catch (BackupException ex)
        {
            throw Invalid("Keep*", ex.Message);
        }
    }

    public CronExpression ParseSchedule()
    {
        try
        {
            var fields = Schedule?.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length ?? 0;
            return CronExpression.Parse(Schedule ?? string.Empty, fields == 6 ? CronFormat.IncludeSeconds : CronFormat.Standard);
        }
        catch (Exception ex) when (ex is CronFormatException or ArgumentNullException)
        {
            throw Invalid("Schedule", $"'{Schedule}' is not a cron expression ({ex.Message}); for example '0 2 * * *' is every day at 02:00");
        }
    }

    public TimeZoneInfo Zone()
    {
        if (TimeZone is null)
        {
            return TimeZoneInfo.Local;
        }

        try
        {
            return TimeZoneInfo.FindSystemTimeZoneById(TimeZone);
        }
        catch (Exception ex) when (ex is TimeZoneNotFoundException or InvalidTimeZoneException)
        {
            throw Invalid("TimeZone", $"'{TimeZone}' is not a time zone known here (for example Europe/Berlin or UTC)");
        }
    }

    private BackupException Invalid(string field, string what) =>
        new(BackupErrorKind.InvalidArgument, "InvalidBackupPolicy", $"Backup policy '{Name}', {field}: {what.TrimEnd('.')}.", Name);
}
