using System.Globalization;
using System.Text.RegularExpressions;

namespace BlockBackup.Engine.Format;

/// <summary>
/// Cinder's posix/NFS naming: container <c>id[0:2]/id[2:4]/id</c>, object prefix
/// <c>volume_&lt;vid&gt;_&lt;UTC yyyyMMddHHmmss&gt;_backup_&lt;bid&gt;</c>, data objects
/// <c>&lt;prefix&gt;-NNNNN</c> and the two side files.
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

    public static string ObjectName(string prefix, int number) =>
        prefix + "-" + number.ToString("D5", CultureInfo.InvariantCulture);

    public static string MetadataName(string prefix) => prefix + MetadataSuffix;

    public static string Sha256FileName(string prefix) => prefix + Sha256FileSuffix;

    /// <summary>Matches a metadata file name and captures the prefix, volume id and backup id.</summary>
    [GeneratedRegex(@"^(?<prefix>volume_(?<vid>[0-9a-fA-F-]{36})_(?<ts>\d{14})_backup_(?<bid>[0-9a-fA-F-]{36}))_metadata$", RegexOptions.CultureInvariant)]
    public static partial Regex MetadataFileRegex();

    /// <summary>
    /// An object name from metadata must be a plain file name inside the container that carries
    /// the backup's prefix; anything else (separators, "..", control characters) is hostile.
    /// </summary>
    public static bool IsSafeObjectName(string name, string prefix) =>
        name.Length > prefix.Length
        && name.Length <= 255
        && name.StartsWith(prefix, StringComparison.Ordinal)
        && name != MetadataName(prefix)
        && name != Sha256FileName(prefix)
        && name.IndexOfAny(['/', '\\', '\0']) < 0
        && !name.Contains("..", StringComparison.Ordinal)
        && !name.Any(char.IsControl);
}
