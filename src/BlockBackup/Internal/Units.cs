namespace BlockBackup.Commands;

/// <summary>Human-readable sizes for views and messages (also called from BlockBackup.format.ps1xml).</summary>
public static class Units
{
    public static string Size(long bytes) => Engine.ByteSize.Human(bytes);
}
