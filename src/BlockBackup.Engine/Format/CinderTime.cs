using System.Globalization;

namespace BlockBackup.Engine.Format;

/// <summary>Cinder writes <c>created_at</c> as Python's <c>str(datetime)</c>; the format varies, so parse leniently.</summary>
public static class CinderTime
{
    public static string Format(DateTime utc) =>
        utc.ToUniversalTime().ToString("yyyy-MM-dd HH:mm:ss.ffffff", CultureInfo.InvariantCulture) + "+00:00";

    private static readonly string[] Patterns =
    [
        "yyyy-MM-dd HH:mm:ss.FFFFFFzzz", "yyyy-MM-dd HH:mm:sszzz", "yyyy-MM-dd HH:mm:ss.FFFFFF", "yyyy-MM-dd HH:mm:ss",
        "yyyy-MM-ddTHH:mm:ss.FFFFFFzzz", "yyyy-MM-ddTHH:mm:sszzz", "yyyy-MM-ddTHH:mm:ss.FFFFFFZ", "yyyy-MM-ddTHH:mm:ssZ",
        "yyyy-MM-ddTHH:mm:ss.FFFFFF", "yyyy-MM-ddTHH:mm:ss",
    ];

    /// <summary>Parses a Cinder timestamp; values without an offset are UTC (Cinder stores naive UTC).</summary>
    public static DateTime? TryParseUtc(string? text)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return null;
        }

        return DateTimeOffset.TryParseExact(text.Trim(), Patterns, CultureInfo.InvariantCulture,
            DateTimeStyles.AssumeUniversal | DateTimeStyles.AllowWhiteSpaces, out var value)
            ? value.UtcDateTime
            : null;
    }
}
