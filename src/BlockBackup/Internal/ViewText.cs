namespace BlockBackup.Commands;

/// <summary>Text shortened for table views (called from BlockBackup.format.ps1xml).</summary>
public static class ViewText
{
    /// <summary>
    /// <paramref name="text"/> in at most <paramref name="width"/> characters, keeping its end: a
    /// path's file name is what tells two volumes of a policy apart, and a table cuts the end.
    /// </summary>
    public static string Tail(string? text, int width) =>
        text is null || text.Length <= width ? text ?? string.Empty : "…" + text[^(width - 1)..];
}
