namespace BlockBackup.Commands;

/// <summary>Text for views (called from BlockBackup.format.ps1xml) and messages.</summary>
public static class ViewText
{
    /// <summary>
    /// <paramref name="text"/> in at most <paramref name="width"/> characters, keeping its end: a
    /// path's file name is what tells two volumes of a policy apart, and a table cuts the end.
    /// </summary>
    public static string Tail(string? text, int width) =>
        text is null || text.Length <= width ? text ?? string.Empty : "…" + text[^(width - 1)..];

    /// <summary>"1 backup", "3 backups": a count with its noun in the number it takes (never "backup(s)").</summary>
    public static string Count(int count, string noun, string? plural = null) =>
        $"{count} {(count == 1 ? noun : plural ?? noun + "s")}";
}
