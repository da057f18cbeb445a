using Newtonsoft.Json;
using Newtonsoft.Json.Linq;


namespace BlockBackup.Engine.Format;

/// <summary>
/// JSON that BlockBackup keeps (run history, in-flight records, locks, leases, summaries) read
/// back exactly as written. Json.NET's JObject.Parse turns every date-like string into a
/// DateTime, converting "+00:00" times to the host's local time, and a string read back from
/// such a token loses its offset: under TZ=Asia/Tokyo a policy that had just run was read as
/// having run nine hours earlier. Here strings stay strings, and times are parsed where they are
/// used, with their offsets.
/// </summary>
public static class JsonDocumentText
{
    public static JObject ParseObject(string text)
    {
        using var reader = new JsonTextReader(new StringReader(text)) { DateParseHandling = DateParseHandling.None, MaxDepth = 64 };
        var value = JToken.ReadFrom(reader);
        while (reader.Read())
        {
            if (reader.TokenType != JsonToken.Comment)
            {
                throw new JsonReaderException($"Additional text after the JSON object (line {reader.LineNumber}, position {reader.LinePosition}).");
            }
        }

        return value as JObject ?? throw new JsonReaderException($"The JSON document is a {value.Type}, not an object.");
    }

    /// <summary>A time written as ISO 8601 with its offset ("O"), as UTC; null when absent or not such a string.</summary>
    public static DateTimeOffset? Time(JToken? token) =>
        token is JValue { Type: JTokenType.String, Value: string text } && TryParseTime(text, out var time) ? time : null;

    /// <summary>An ISO 8601 time (one without an offset is taken as UTC), as UTC; false when <paramref name="text"/> is none.</summary>
    public static bool TryParseTime(string? text, out DateTimeOffset time) =>
        DateTimeOffset.TryParse(text, System.Globalization.CultureInfo.InvariantCulture,
            System.Globalization.DateTimeStyles.AssumeUniversal | System.Globalization.DateTimeStyles.AdjustToUniversal, out time);
}
