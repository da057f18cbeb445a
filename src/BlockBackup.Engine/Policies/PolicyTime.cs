using System.Globalization;

namespace BlockBackup.Engine.Policies;

/// <summary>
/// How the policy files hold times: UTC, ISO 8601 round-trip with its offset
/// ("2026-12-08T01:30:00.0000000+00:00"), read back as the same instant on a machine in any time
/// zone. Readers must keep JSON dates as text (DateParseHandling.None): Newtonsoft's default turns
/// them into local DateTimes first, which read back shifted by the local offset.
/// </summary>
public static class PolicyTime
{
    public static string Format(DateTimeOffset time) => time.ToUniversalTime().ToString("O", CultureInfo.InvariantCulture);

    /// <summary>An ISO 8601 time (one without an offset is taken as UTC), as UTC; false when <paramref name="text"/> is none.</summary>
    public static bool TryParse(string? text, out DateTimeOffset time) => BlockBackup.Engine.Format.JsonDocumentText.TryParseTime(text, out time);
}
