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

    public void Validate()
    {
        if (EveryMinutes is < 1 or > 60 || 60 % EveryMinutes != 0)
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidScheduleInterval",
                $"-Every {EveryMinutes} minutes: give 1 to 60 minutes that divide an hour (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60).", EveryMinutes);
        }

        foreach (var (what, value) in new[] { ("pwsh", PwshPath), ("module", ModuleManifest), ("configuration directory", ConfigDirectory ?? ""), ("log file", LogFile ?? "") })
        {
            if (value.IndexOfAny(['\n', '\r', '\0', '"', '\'', '%', '`', '$']) >= 0)
            {
                throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidSchedulePath",
                    $"The {what} path '{value}' contains a character that cannot be written safely into a scheduler entry (quotes, $, %, `, or a line break); install to a plainer path.", value);
            }
        }
    }

    /// <summary>The PowerShell the entry runs: import by path, run what is due, fail the process when a run failed.</summary>
    public string Script => $"Import-Module '{ModuleManifest}'; Invoke-BackupPolicy -Due -ErrorAction Stop";

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
        if (ConfigDirectory is not null)
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"Environment=\"BLOCKBACKUP_CONFIG_DIR={ConfigDirectory}\"");
        }

        // stdout and stderr go to the journal; a failed run is a failed unit (systemctl --failed).
        text.AppendLine(CultureInfo.InvariantCulture, $"ExecStart=\"{PwshPath}\" -NoProfile -NonInteractive -Command \"{Script}\"");
        return text.ToString();
    }

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
        var env = ConfigDirectory is null ? string.Empty : $"BLOCKBACKUP_CONFIG_DIR='{ConfigDirectory}' ";
        var log = LogFile is null ? string.Empty : $" >> '{LogFile}' 2>&1";
        // cron runs the line with /bin/sh: the script is one single-quoted word; inside it the
        // module path is in PowerShell double quotes, which cannot contain the characters Validate refuses.
        var script = Script.Replace("'", "\"", StringComparison.Ordinal);
        return $"{when} {(user is null ? string.Empty : user + " ")}{env}'{PwshPath}' -NoProfile -NonInteractive -Command '{script}'{log} # {Name}";
    }

    public string CronFile(string user) =>
        "# Written by BlockBackup's Register-BackupSchedule; Unregister-BackupSchedule removes it.\n" +
        "SHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n" +
        CronLine(user) + "\n";
}
