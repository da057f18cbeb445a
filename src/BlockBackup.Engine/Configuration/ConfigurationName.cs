namespace BlockBackup.Engine.Configuration;

/// <summary>
/// The one rule for every name that becomes a file name in the configuration directory: policy
/// names (<c>policies/</c>, <c>state/</c>: the policy, its run history and its lock) and repository
/// registration names (<c>repositories/</c>: the registration and its secret). A name that passes
/// can only ever name a file directly inside its folder, on Linux and Windows alike: no separator,
/// no '..', no leading '.' (hidden and temporary files), no drive or stream colon, no Windows device name.
/// </summary>
public static class ConfigurationName
{
    /// <summary>The rule, as messages state it.</summary>
    public const string Rule = "1-64 ASCII letters, digits, '-', '_' or '.', not starting with '.', and not a Windows device name (CON, PRN, AUX, NUL, COM1-9, LPT1-9)";

    private static readonly string[] WindowsDeviceNames = ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"];

    public static bool IsValid(string? name)
    {
        if (string.IsNullOrEmpty(name) || name.Length > 64 || name[0] == '.')
        {
            return false;
        }

        if (!name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
        {
            return false;
        }

        // Windows opens the device for CON and for CON.anything (so for CON.json too).
        var stem = name.Split('.')[0];
        return !WindowsDeviceNames.Contains(stem, StringComparer.OrdinalIgnoreCase) &&
               !(stem.Length == 4 && (stem.StartsWith("COM", StringComparison.OrdinalIgnoreCase) || stem.StartsWith("LPT", StringComparison.OrdinalIgnoreCase)) && char.IsAsciiDigit(stem[3]));
    }
}
