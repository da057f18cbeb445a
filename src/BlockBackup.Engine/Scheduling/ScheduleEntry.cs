using System.Globalization;
using System.Text;
using BlockBackup.Engine.Errors;

namespace BlockBackup.Engine.Scheduling;

/// <summary>How the operating system runs `Invoke-BackupPolicy -Due`.</summary>
[Newtonsoft.Json.JsonConverter(typeof(Newtonsoft.Json.Converters.StringEnumConverter))]
public enum ScheduleKind
{
    /// <summary>A systemd service + timer (Persistent=true: a run missed while the machine was off happens at boot).</summary>
    Systemd,
    /// <summary>A cron entry (/etc/cron.d for root, the user's crontab otherwise).</summary>
    Cron,
    /// <summary>A Windows Scheduled Task.</summary>
    ScheduledTask,
}

/// <summary>
/// The one operating-system entry that runs every due policy: what it runs (pwsh, non-interactive,
/// the module imported by path, so no profile or module path is involved) and how often. The
/// renderers are pure, so the exact files are tested without installing them.
/// </summary>
public sealed record ScheduleEntry
{
    public const string Name = "blockbackup";

    public required string PwshPath { get; init; }
    public required string ModuleManifest { get; init; }
    /// <summary>Minutes between checks for due policies (1-60, a divisor of 60 so every hour looks alike).</summary>
    public int EveryMinutes { get; init; } = 5;
    /// <summary>The policy store the entry uses, when not the default (BLOCKBACKUP_CONFIG_DIR).</summary>
    public string? ConfigDirectory { get; init; }
    /// <summary>Where cron output goes (systemd and Windows log to the journal / task history).</summary>
    public string? LogFile { get; init; }

    /// <summary>The environment variable that carries the module's manifest path to the entry's PowerShell.</summary>
    public const string ModuleVariable = "BLOCKBACKUP_MODULE";

    /// <summary>
    /// What the systemd and cron entries run. It is a constant: the paths reach it through the
    /// environment (<see cref="ModuleVariable"/>, BLOCKBACKUP_CONFIG_DIR), so no path is ever part
    /// of PowerShell code, whatever quotes (PowerShell also honours U+2018-U+201E) it contains.
    /// Its output goes to a log (cron's file, the journal): plain text (no ANSI escapes, errors
    /// included) and each run record as a list, one property a line, 4096 columns wide so that no
    /// path or reason is wrapped or cut.
    /// </summary>
    public const string Script = "$PSStyle.OutputRendering = 'PlainText'; Import-Module -Name $env:" + ModuleVariable +
        "; Invoke-BackupPolicy -Due -ErrorAction Stop | Format-List | Out-String -Stream -Width 4096";

    /// <summary>
    /// What the Windows Scheduled Task runs: schtasks cannot give a task environment variables, so
    /// the manifest path is a PowerShell single-quoted string, quoted by construction.
    /// </summary>
    public string WindowsScript => $"Import-Module -Name '{EscapeSingleQuotedStringContent(ModuleManifest)}'; Invoke-BackupPolicy -Due -ErrorAction Stop";

    /// <summary>
    /// Refuses what no scheduler entry can hold: control characters (a line break ends a cron line
    /// or a unit setting) and relative paths (a scheduler has no current directory). Everything else
    /// is quoted by construction for each scheduler (see <see cref="SystemdService"/>, <see cref="CronLine"/>).
    /// </summary>
    public void Validate()
    {
        if (EveryMinutes is < 1 or > 60 || 60 % EveryMinutes != 0)
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidScheduleInterval",
                $"-EveryMinutes {EveryMinutes}: give a number of minutes from 1 to 60 that divides an hour (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60).", EveryMinutes);
        }

        foreach (var (what, value) in new[] { ("pwsh", PwshPath), ("module", ModuleManifest), ("configuration directory", ConfigDirectory), ("log file", LogFile) })
        {
            if (value is null)
            {
                continue;
            }

            if (value.Length == 0 || value.Any(char.IsControl) || !Path.IsPathFullyQualified(value))
            {
                var shown = Configuration.RegisteredRepository.Show(value);
                throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidSchedulePath",
                    $"The {what} path '{shown}' cannot be written into a scheduler entry: it must be an absolute path without control characters (line breaks, tabs); install to such a path.", value);
            }
        }
    }

    /// <summary>The variables the entry sets for its PowerShell: the module's manifest and, when not the default, the configuration directory.</summary>
    public IEnumerable<(string Name, string Value)> Environment()
    {
        yield return (ModuleVariable, ModuleManifest);
        if (ConfigDirectory is not null)
        {
            yield return ("BLOCKBACKUP_CONFIG_DIR", ConfigDirectory);
        }
    }

    public string SystemdService()
    {
        var text = new StringBuilder();
        text.AppendLine("# Written by BlockBackup's Register-BackupSchedule; Unregister-BackupSchedule removes it.");
        text.AppendLine("[Unit]");
        text.AppendLine("Description=BlockBackup: run the backup policies that are due");
        text.AppendLine("After=network-online.target remote-fs.target");
        text.AppendLine("Wants=network-online.target");
        text.AppendLine();
        text.AppendLine("[Service]");
        text.AppendLine("Type=oneshot");
        foreach (var (name, value) in Environment())
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"Environment={SystemdQuote(name + "=" + value, exec: false)}");
        }

        // stdout and stderr go to the journal; a failed run is a failed unit (systemctl --failed).
        // systemd expands no variables in the executable itself ('$$' would stay doubled), only in its arguments.
        text.AppendLine(CultureInfo.InvariantCulture, $"ExecStart={SystemdQuote(SystemdExecutable(), exec: false)} -NoProfile -NonInteractive -Command {SystemdQuote(Script, exec: true)}");
        return text.ToString();
    }

    /// <summary>The pwsh path, which systemd refuses as an executable (fatally: the unit never starts) when it holds a quote or a backslash.</summary>
    private string SystemdExecutable() =>
        PwshPath.IndexOfAny(['\'', '"', '\\']) < 0
            ? PwshPath
            : throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidSchedulePath",
                $"The pwsh path '{PwshPath}' holds a quote or a backslash, which systemd refuses in the executable of a unit (\"Executable name contains special characters\"); run Register-BackupSchedule from a pwsh installed elsewhere, or use -Kind Cron.", PwshPath);

    public string SystemdTimer()
    {
        var text = new StringBuilder();
        text.AppendLine("# Written by BlockBackup's Register-BackupSchedule; Unregister-BackupSchedule removes it.");
        text.AppendLine("[Unit]");
        text.AppendLine("Description=BlockBackup: check for due backup policies every few minutes");
        text.AppendLine();
        text.AppendLine("[Timer]");
        text.AppendLine(CultureInfo.InvariantCulture, $"OnCalendar=*-*-* *:00/{EveryMinutes}:00");
        text.AppendLine("Persistent=true");
        text.AppendLine(CultureInfo.InvariantCulture, $"Unit={Name}.service");
        text.AppendLine();
        text.AppendLine("[Install]");
        text.AppendLine("WantedBy=timers.target");
        return text.ToString();
    }

    /// <summary>One cron line; <paramref name="user"/> is the user field of /etc/cron.d files (null in a user crontab).</summary>
    public string CronLine(string? user)
    {
        var when = EveryMinutes == 60 ? "0 * * * *" : $"*/{EveryMinutes} * * * *";
        // cron hands the command to /bin/sh: each path is one shell word (variable assignments before the command).
        var env = string.Concat(Environment().Select(v => $"{v.Name}={ShellQuote(v.Value)} "));
        var log = LogFile is null ? string.Empty : $" >> {ShellQuote(LogFile)} 2>&1";
        return $"{when} {(user is null ? string.Empty : user + " ")}{env}{ShellQuote(PwshPath)} -NoProfile -NonInteractive -Command {ShellQuote(Script)}{log} # {Name}";
    }

    /// <summary>
    /// One /bin/sh word that is exactly <paramref name="value"/>: single-quoted ('\'' for a quote).
    /// cron turns every unescaped '%' of a command into a line break, and its escape (\%) is undone
    /// differently after a backslash by different crons, so a '%' is never written: the shell makes
    /// it ("$(printf '\045')").
    /// </summary>
    public static string ShellQuote(string value) =>
        string.Join("\"$(printf '\\045')\"", value.Split('%').Select(part => "'" + part.Replace("'", "'\\''", StringComparison.Ordinal) + "'"));

    /// <summary>
    /// One systemd word that is exactly <paramref name="value"/> after systemd's unquoting: in double
    /// quotes, with '\' and '"' backslash-escaped (systemd undoes C escapes), '%' doubled (specifiers)
    /// and, in Exec lines (<paramref name="exec"/>), '$' doubled (variable expansion; Environment= has none).
    /// </summary>
    public static string SystemdQuote(string value, bool exec)
    {
        var quoted = value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("%", "%%", StringComparison.Ordinal);
        return "\"" + (exec ? quoted.Replace("$", "$$", StringComparison.Ordinal) : quoted) + "\"";
    }

    /// <summary>
    /// The content of a PowerShell single-quoted string: every character PowerShell closes such a
    /// string with (' and U+2018-U+201B) doubled. This is CodeGeneration.EscapeSingleQuotedStringContent
    /// of System.Management.Automation, which the engine does not reference.
    /// </summary>
    public static string EscapeSingleQuotedStringContent(string value)
    {
        var text = new StringBuilder(value.Length + 8);
        foreach (var c in value)
        {
            text.Append(c);
            if (c is '\'' or '\u2018' or '\u2019' or '\u201A' or '\u201B')
            {
                text.Append(c);
            }
        }

        return text.ToString();
    }

    public string CronFile(string user) =>
        "# Written by BlockBackup's Register-BackupSchedule; Unregister-BackupSchedule removes it.\n" +
        "SHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n" +
        CronLine(user) + "\n";
}
