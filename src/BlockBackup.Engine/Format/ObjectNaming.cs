using System.Globalization;
using System.Text.RegularExpressions;

namespace BlockBackup.Engine.Format;

/// <summary>
/// Cinder's naming. posix/NFS: container <c>id[0:2]/id[2:4]/id</c>, object prefix
/// <c>volume_&lt;vid&gt;_&lt;UTC yyyyMMddHHmmss&gt;_backup_&lt;bid&gt;</c>. s3/swift: the bucket is the
/// container, prefix <c>volume_&lt;vid&gt;/&lt;UTC yyyyMMddHHmmss&gt;/az_&lt;az&gt;_backup_&lt;bid&gt;</c>.
/// Both: data objects <c>&lt;prefix&gt;-NNNNN</c> and the two side files.
/// </summary>
public static partial class ObjectNaming
{
    public const string MetadataSuffix = "_metadata";
    public const string Sha256FileSuffix = "_sha256file";

    public static string DefaultContainer(Guid backupId)
    {
        var id = FormatId(backupId);
        return Path.Combine(id[..2], id.Substring(2, 2), id);
    }

    public static string FormatId(Guid id) => id.ToString("D", CultureInfo.InvariantCulture);

    public static string Prefix(Guid volumeId, DateTime utcStart, Guid backupId) =>
        $"volume_{FormatId(volumeId)}_{utcStart.ToString("yyyyMMddHHmmss", CultureInfo.InvariantCulture)}_backup_{FormatId(backupId)}";

    /// <summary>The prefix Cinder's s3 and swift drivers give a backup (<c>_generate_object_name_prefix</c>), under an optional key prefix ending in '/'.</summary>
    public static string ObjectStorePrefix(string keyPrefix, Guid volumeId, DateTime utcStart, string availabilityZone, Guid backupId) =>
        $"{keyPrefix}volume_{FormatId(volumeId)}/{utcStart.ToString("yyyyMMddHHmmss", CultureInfo.InvariantCulture)}/az_{availabilityZone}_backup_{FormatId(backupId)}";

    /// <summary>Matches an object-store object name and captures the prefix, volume id, timestamp, backup id and what follows the prefix.</summary>
    [GeneratedRegex(@"^(?<prefix>volume_(?<vid>[0-9a-fA-F-]{36})/(?<ts>\d{14})/az_(?<az>[^/]*)_backup_(?<bid>[0-9a-fA-F-]{36}))(?<suffix>_metadata|_sha256file|-\d{5,})$", RegexOptions.CultureInvariant)]
    public static partial Regex ObjectStoreNameRegex();

    /// <summary>
    /// The volume id, backup id and start time in a name one of the naming regexes matched. The
    /// regexes admit strings no backup can have (36 dashes, the 14 digits 99999999999999): false,
    /// with what is wrong, for those, so that a stray name is skipped rather than break a listing.
    /// </summary>
    public static bool TryParseNamed(Match match, out Guid volumeId, out Guid backupId, out DateTime startedUtc, out string problem)
    {
        backupId = Guid.Empty;
        startedUtc = DateTime.MinValue;
        problem = string.Empty;
        if (!Guid.TryParseExact(match.Groups["vid"].Value, "D", out volumeId))
        {
            problem = $"the volume id '{match.Groups["vid"].Value}' is not a UUID";
            return false;
        }

        if (!Guid.TryParseExact(match.Groups["bid"].Value, "D", out backupId))
        {
            problem = $"the backup id '{match.Groups["bid"].Value}' is not a UUID";
            return false;
        }

        if (!DateTime.TryParseExact(match.Groups["ts"].Value, "yyyyMMddHHmmss", CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal, out startedUtc))
        {
            problem = $"the time '{match.Groups["ts"].Value}' is not a date";
            return false;
        }

        return true;
    }

    /// <summary>Whether a backup prefix (either layout, after any key prefix) belongs to the volume.</summary>
    public static bool PrefixNamesVolume(string prefix, Guid volumeId)
    {
        var marker = "volume_" + FormatId(volumeId);
        var at = prefix.LastIndexOf(marker, StringComparison.OrdinalIgnoreCase);
        return at >= 0 && (at == 0 || prefix[at - 1] == '/') && prefix.Length > at + marker.Length && prefix[at + marker.Length] is '_' or '/';
    }

    public static string ObjectName(string prefix, int number) =>
        prefix + "-" + number.ToString("D5", CultureInfo.InvariantCulture);

    public static string MetadataName(string prefix) => prefix + MetadataSuffix;

    public static string Sha256FileName(string prefix) => prefix + Sha256FileSuffix;

    /// <summary>Matches a metadata file name and captures the prefix, volume id and backup id.</summary>
    [GeneratedRegex(@"^(?<prefix>volume_(?<vid>[0-9a-fA-F-]{36})_(?<ts>\d{14})_backup_(?<bid>[0-9a-fA-F-]{36}))_metadata$", RegexOptions.CultureInvariant)]
    public static partial Regex MetadataFileRegex();

    /// <summary>
    /// An object name from metadata must be the backup's prefix followed by a plain name (no
    /// separators, "..", control characters): anything else is hostile. The prefix comes from the
    /// listing, never from the metadata; in the object-store layout it holds '/' itself.
    /// </summary>
    public static bool IsSafeObjectName(string name, string prefix)
    {
        if (name.Length <= prefix.Length || name.Length > 1024 || !name.StartsWith(prefix, StringComparison.Ordinal)
            || name == MetadataName(prefix) || name == Sha256FileName(prefix))
        {
            return false;
        }

        var rest = name.AsSpan(prefix.Length);
        return rest.IndexOfAny('/', '\\', '\0') < 0 && !rest.Contains("..", StringComparison.Ordinal) && !name.Any(char.IsControl)
            && (prefix.IndexOf('/') >= 0 || name.Length <= 255);
    }
}
