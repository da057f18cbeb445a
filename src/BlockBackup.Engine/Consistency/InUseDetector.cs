using BlockBackup.Engine.Native;

namespace BlockBackup.Engine.Consistency;

/// <summary>
/// Tells whether a volume is in use: a mounted (or device-mapper-held) block device, or a file or
/// device another process has open for writing. Cinder refuses such volumes without force.
/// </summary>
public static class InUseDetector
{
    /// <summary>A human-readable reason the volume is in use, or null when it is not.</summary>
    public static string? WhyInUse(string resolvedPath, bool isBlockDevice)
    {
        if (!LinuxNative.IsLinux)
        {
            return WhyInUsePortable(resolvedPath);
        }

        if (isBlockDevice && BlockDeviceHolder(resolvedPath) is { } held)
        {
            return held;
        }

        return OpenForWritingBy(resolvedPath);
    }

    private static string? BlockDeviceHolder(string devicePath)
    {
        var name = Path.GetFileName(devicePath);
        var sys = Path.Combine("/sys/class/block", name);
        string? majorMinor = null;
        try
        {
            majorMinor = File.ReadAllText(Path.Combine(sys, "dev")).Trim();
            var holders = Path.Combine(sys, "holders");
            if (Directory.Exists(holders) && Directory.EnumerateFileSystemEntries(holders).FirstOrDefault() is { } holder)
            {
                return $"block device {devicePath} is held by {Path.GetFileName(holder)} (device-mapper/LVM/RAID)";
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        if (majorMinor is null)
        {
            return null;
        }

        try
        {
            foreach (var line in File.ReadLines("/proc/self/mountinfo"))
            {
                // "36 35 7:0 / /mnt rw,relatime - xfs /dev/loop0 rw" : field 3 is major:minor, field 5 the mount point.
                var fields = line.Split(' ');
                if (fields.Length > 4 && fields[2] == majorMinor)
                {
                    return $"block device {devicePath} is mounted on {fields[4]}";
                }
            }
        }
        catch (IOException)
        {
        }

        return null;
    }

    /// <summary>Scans /proc/*/fd for another process holding the path open with O_WRONLY or O_RDWR.</summary>
    private static string? OpenForWritingBy(string resolvedPath)
    {
        var self = Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture);
        IEnumerable<string> processes;
        try
        {
            processes = Directory.EnumerateDirectories("/proc");
        }
        catch (IOException)
        {
            return null;
        }

        foreach (var proc in processes)
        {
            var pid = Path.GetFileName(proc);
            if (pid.Length == 0 || !char.IsAsciiDigit(pid[0]) || pid == self)
            {
                continue;
            }

            try
            {
                foreach (var fd in Directory.EnumerateFileSystemEntries(Path.Combine(proc, "fd")))
                {
                    string? target;
                    try
                    {
                        target = new FileInfo(fd).LinkTarget;
                    }
                    catch (IOException)
                    {
                        continue;
                    }

                    if (target != resolvedPath)
                    {
                        continue;
                    }

                    var info = File.ReadAllText(Path.Combine(proc, "fdinfo", Path.GetFileName(fd)));
                    var flagsLine = info.Split('\n').FirstOrDefault(l => l.StartsWith("flags:", StringComparison.Ordinal));
                    if (flagsLine is not null && Convert.ToInt32(flagsLine[6..].Trim(), 8) is var flags && (flags & 3) != 0)
                    {
                        var comm = TryRead(Path.Combine(proc, "comm"))?.Trim() ?? "?";
                        return $"{resolvedPath} is open for writing by process {pid} ({comm})";
                    }
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException)
            {
                // The process exited or is not ours to inspect.
            }
        }

        return null;
    }

    private static string? WhyInUsePortable(string path)
    {
        try
        {
            // Fails when another process holds write access (Windows share modes).
            using var probe = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            return null;
        }
        catch (IOException)
        {
            return $"{path} is open for writing by another process";
        }
    }

    private static string? TryRead(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (IOException)
        {
            return null;
        }
    }
}
