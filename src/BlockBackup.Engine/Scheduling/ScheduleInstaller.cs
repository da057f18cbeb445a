using System.Diagnostics;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Repository;

namespace BlockBackup.Engine.Scheduling;

/// <summary>What is registered with the operating system, as Get-BackupSchedule reports it.</summary>
public sealed record ScheduleRegistration(ScheduleKind Kind, bool IsRegistered, bool IsCurrent, IReadOnlyList<string> Locations, string? Command, string Detail)
{
    /// <summary>The -Destination it was read from (null: the system's place), so that a registration pipes into Unregister-BackupSchedule.</summary>
    public string? Destination { get; init; }

    public override string ToString() => $"{Kind}: {(IsRegistered ? IsCurrent ? "registered" : "registered, differs from what Register-BackupSchedule would write" : "not registered")}";
}

/// <summary>
/// Installs, inspects and removes the one scheduler entry, idempotently: the files are written
/// only when their content changes (atomically), and the scheduler is told only then.
/// <paramref name="destination"/> overrides where the files go (a unit directory for systemd, a
/// cron.d-style file for cron), for packaging and tests; then the scheduler itself is not told.
/// </summary>
public sealed class ScheduleInstaller(ScheduleKind kind, string? destination = null)
{
    public ScheduleKind Kind { get; } = kind;

    /// <summary>systemd where it runs (PID 1), cron elsewhere on Unix, a Scheduled Task on Windows.</summary>
    public static ScheduleKind DefaultKind() =>
        OperatingSystem.IsWindows() ? ScheduleKind.ScheduledTask
        : Directory.Exists("/run/systemd/system") ? ScheduleKind.Systemd
        : ScheduleKind.Cron;

    private static bool IsRoot => !OperatingSystem.IsWindows() && Environment.UserName == "root";

    private string UnitDirectory => destination ?? (IsRoot ? "/etc/systemd/system"
        : Path.Combine(Environment.GetEnvironmentVariable("XDG_CONFIG_HOME") ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".config"), "systemd", "user"));

    private string ServicePath => Path.Combine(UnitDirectory, ScheduleEntry.Name + ".service");

    private string TimerPath => Path.Combine(UnitDirectory, ScheduleEntry.Name + ".timer");

    /// <summary>
    /// A cron.d file when root or when a destination is given (a directory, existing or written with
    /// a trailing separator, holds it as blockbackup, as a unit directory holds the units); the
    /// user's crontab otherwise.
    /// </summary>
    private string? CronFilePath => destination is null ? (IsRoot ? "/etc/cron.d/" + ScheduleEntry.Name : null)
        : Directory.Exists(destination) || Path.EndsInDirectorySeparator(destination) ? Path.Combine(destination, ScheduleEntry.Name)
        : destination;

    public ScheduleRegistration Register(ScheduleEntry entry, Action<string>? log = null)
    {
        entry.Validate();
        switch (Kind)
        {
            case ScheduleKind.Systemd:
                var changed = WriteIfChanged(ServicePath, entry.SystemdService()) | WriteIfChanged(TimerPath, entry.SystemdTimer());
                log?.Invoke(changed ? $"Wrote {ServicePath} and {TimerPath}." : $"{ServicePath} and {TimerPath} are already current.");
                if (destination is null)
                {
                    var user = IsRoot ? [] : new[] { "--user" };
                    if (changed)
                    {
                        Run("systemctl", [.. user, "daemon-reload"]);
                    }

                    Run("systemctl", [.. user, "enable", "--now", ScheduleEntry.Name + ".timer"]);
                    log?.Invoke($"Enabled and started {ScheduleEntry.Name}.timer (systemctl{(IsRoot ? "" : " --user")} list-timers shows it; journalctl -u {ScheduleEntry.Name} its runs).");
                }

                break;
            case ScheduleKind.Cron when CronFilePath is { } file:
                log?.Invoke(WriteIfChanged(file, entry.CronFile(Environment.UserName)) ? $"Wrote {file}." : $"{file} is already current.");
                break;
            case ScheduleKind.Cron:
                var lines = ReadCrontab().Where(l => !IsOurs(l)).Append(entry.CronLine(null)).ToList();
                WriteCrontab(lines);
                log?.Invoke("Updated the user's crontab (crontab -l shows it).");
                break;
            case ScheduleKind.ScheduledTask:
                Run("schtasks.exe", ["/Create", "/F", "/TN", @"BlockBackup\InvokeDue", "/SC", "MINUTE", "/MO", entry.EveryMinutes.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    "/TR", $"\"{entry.PwshPath}\" -NoProfile -NonInteractive -Command \"{entry.WindowsScript}\"", .. (IsElevated() ? new[] { "/RU", "SYSTEM" } : [])]);
                log?.Invoke(@"Registered the scheduled task BlockBackup\InvokeDue.");
                break;
        }

        return Get(entry);
    }

    public ScheduleRegistration Get(ScheduleEntry? expected) => Read(expected) with { Destination = destination };

    private ScheduleRegistration Read(ScheduleEntry? expected)
    {
        switch (Kind)
        {
            case ScheduleKind.Systemd:
                var present = File.Exists(ServicePath) && File.Exists(TimerPath);
                var current = present && expected is not null && File.ReadAllText(ServicePath) == expected.SystemdService() && File.ReadAllText(TimerPath) == expected.SystemdTimer();
                return new(Kind, present, current, [ServicePath, TimerPath], present ? ExecStart(File.ReadAllText(ServicePath)) : null, present ? File.ReadAllText(TimerPath) : string.Empty);
            case ScheduleKind.Cron when CronFilePath is { } file:
                var line = File.Exists(file) ? File.ReadAllLines(file).FirstOrDefault(IsOurs) : null;
                return new(Kind, line is not null, line is not null && expected is not null && line == expected.CronLine(Environment.UserName), [file], line, line ?? string.Empty);
            case ScheduleKind.Cron:
                var ours = ReadCrontab().FirstOrDefault(IsOurs);
                return new(Kind, ours is not null, ours is not null && expected is not null && ours == expected.CronLine(null), ["crontab"], ours, ours ?? string.Empty);
            default:
                var (code, output) = Run("schtasks.exe", ["/Query", "/TN", @"BlockBackup\InvokeDue", "/FO", "LIST", "/V"], check: false);
                return new(Kind, code == 0, code == 0 && expected is not null && output.Contains(expected.ModuleManifest, StringComparison.OrdinalIgnoreCase), [@"BlockBackup\InvokeDue"], null, output);
        }
    }

    public ScheduleRegistration Unregister(Action<string>? log = null)
    {
        switch (Kind)
        {
            case ScheduleKind.Systemd:
                if (destination is null && File.Exists(TimerPath))
                {
                    Run("systemctl", [.. IsRoot ? [] : new[] { "--user" }, "disable", "--now", ScheduleEntry.Name + ".timer"], check: false);
                }

                foreach (var file in new[] { TimerPath, ServicePath }.Where(File.Exists))
                {
                    File.Delete(file);
                    log?.Invoke($"Removed {file}.");
                }

                break;
            case ScheduleKind.Cron when CronFilePath is { } file:
                if (File.Exists(file))
                {
                    File.Delete(file);
                    log?.Invoke($"Removed {file}.");
                }

                break;
            case ScheduleKind.Cron:
                var lines = ReadCrontab();
                if (lines.Any(IsOurs))
                {
                    WriteCrontab(lines.Where(l => !IsOurs(l)).ToList());
                    log?.Invoke("Removed the entry from the user's crontab.");
                }

                break;
            case ScheduleKind.ScheduledTask:
                Run("schtasks.exe", ["/Delete", "/F", "/TN", @"BlockBackup\InvokeDue"], check: false);
                break;
        }

        return Get(null);
    }

    private static bool IsOurs(string line) => line.TrimEnd().EndsWith("# " + ScheduleEntry.Name, StringComparison.Ordinal);

    private static string? ExecStart(string service) =>
        service.Split('\n').FirstOrDefault(l => l.StartsWith("ExecStart=", StringComparison.Ordinal))?["ExecStart=".Length..].Trim();

    private static bool WriteIfChanged(string path, string content)
    {
        if (File.Exists(path) && File.ReadAllText(path) == content)
        {
            return false;
        }

        AtomicFile.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        AtomicFile.Write(path, stream =>
        {
            stream.Write(System.Text.Encoding.UTF8.GetBytes(content));
            if (!OperatingSystem.IsWindows())
            {
                // cron ignores /etc/cron.d files that group or others can write; units are 0644 by convention.
                File.SetUnixFileMode(((FileStream)stream).SafeFileHandle, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
            }

            return 0;
        });
        return true;
    }

    private static List<string> ReadCrontab()
    {
        var (code, output) = Run("crontab", ["-l"], check: false);
        return code == 0 ? output.Split('\n').Where(l => l.Length > 0).ToList() : [];   // "no crontab for user" exits 1
    }

    private static void WriteCrontab(List<string> lines) => Run("crontab", ["-"], stdin: string.Join('\n', lines) + "\n");

    private static bool IsElevated() => OperatingSystem.IsWindows() && Environment.IsPrivilegedProcess;

    private static (int Code, string Output) Run(string file, string[] args, bool check = true, string? stdin = null)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = stdin is not null, UseShellExecute = false };
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        Process process;
        try
        {
            process = Process.Start(info)!;
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw new BackupException(BackupErrorKind.NotSupported, "SchedulerNotFound",
                $"'{file}' is not available here, so this kind of schedule cannot be registered; choose another with -Kind.", file, ex);
        }

        using (process)
        {
            if (stdin is not null)
            {
                process.StandardInput.Write(stdin);
                process.StandardInput.Close();
            }

            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEnd();
            process.WaitForExit();
            if (check && process.ExitCode != 0)
            {
                throw new BackupException(BackupErrorKind.InvalidOperation, "SchedulerCommandFailed",
                    $"{file} {string.Join(' ', args)} failed (exit code {process.ExitCode}): {stderr.Trim()}", file);
            }

            return (process.ExitCode, stdout.Result + stderr);
        }
    }
}
