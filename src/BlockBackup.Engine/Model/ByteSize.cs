using System.Globalization;

namespace BlockBackup.Engine;

/// <summary>Human-readable sizes (binary units) for messages: "1.50 GiB".</summary>
public static class ByteSize
{
    private static readonly string[] Suffixes = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

    public static string Human(long bytes)
    {
        double value = bytes;
        var i = 0;
        while (Math.Abs(value) >= 1024 && i < Suffixes.Length - 1)
        {
            value /= 1024;
            i++;
        }

        return i == 0 ? $"{bytes} B" : value.ToString(value >= 100 ? "0" : value >= 10 ? "0.0" : "0.00", CultureInfo.CurrentCulture) + " " + Suffixes[i];
    }
}
