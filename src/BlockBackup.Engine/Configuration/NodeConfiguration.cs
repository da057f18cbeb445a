namespace BlockBackup.Engine.Configuration;

/// <summary>
/// The node-local configuration directory (policies, their run history, verification coverage):
/// BLOCKBACKUP_CONFIG_DIR when set; otherwise /etc/blockbackup for root and
/// ~/.config/blockbackup (XDG_CONFIG_HOME) for other users on Unix, %ProgramData%\BlockBackup on Windows.
/// </summary>
public static class NodeConfiguration
{
    public const string DirectoryVariable = "BLOCKBACKUP_CONFIG_DIR";

    public static string Directory()
    {
        if (Environment.GetEnvironmentVariable(DirectoryVariable) is { Length: > 0 } configured)
        {
            return Path.GetFullPath(configured);
        }

        if (OperatingSystem.IsWindows())
        {
            return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.CommonApplicationData), "BlockBackup");
        }

        if (Environment.UserName == "root")
        {
            return "/etc/blockbackup";
        }

        var config = Environment.GetEnvironmentVariable("XDG_CONFIG_HOME") is { Length: > 0 } xdg
            ? xdg : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".config");
        return Path.Combine(config, "blockbackup");
    }
}
