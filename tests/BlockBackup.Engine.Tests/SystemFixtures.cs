using System.Diagnostics;

namespace BlockBackup.Engine.Tests;

/// <summary>
/// A fact that needs Linux, root and the named tools (losetup, mkfs.xfs…); it is reported as
/// skipped, with the reason, where they are missing (xunit 2 decides skips at discovery).
/// </summary>
public sealed class SystemFactAttribute : Xunit.FactAttribute
{
    public SystemFactAttribute(bool needsRoot, params string[] tools)
    {
        if (!OperatingSystem.IsLinux())
        {
            Skip = "needs Linux";
        }
        else if (needsRoot && !Shell.IsRoot)
        {
            Skip = "needs root (loop devices, mounts)";
        }
        else if (tools.FirstOrDefault(t => !Shell.OnPath(t)) is { } missing)
        {
            Skip = $"needs '{missing}' on PATH";
        }
    }
}

internal static class Shell
{
    public static (int Code, string Output) Run(string file, params string[] args)
    {
        try
        {
            var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in args)
            {
                psi.ArgumentList.Add(a);
            }

            using var p = Process.Start(psi)!;
            var output = p.StandardOutput.ReadToEnd() + p.StandardError.ReadToEnd();
            p.WaitForExit();
            return (p.ExitCode, output.Trim());
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            return (-1, ex.Message);
        }
    }

    public static bool IsRoot => OperatingSystem.IsLinux() && Environment.UserName == "root";

    public static bool OnPath(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Append("/usr/sbin").Append("/sbin")
            .Any(dir => dir.Length > 0 && File.Exists(Path.Combine(dir, tool)));
}

/// <summary>A loop device over a sparse file (needs root and loop devices; the test is skipped otherwise).</summary>
internal sealed class LoopDevice : IDisposable
{
    public static string WhyNot { get; private set; } = "";

    private LoopDevice(string device, string backing)
    {
        Device = device;
        BackingFile = backing;
    }

    public string Device { get; }
    public string BackingFile { get; }

    public static LoopDevice? TryAttach(long size)
    {
        if (!Shell.IsRoot)
        {
            WhyNot = "loop devices need root";
            return null;
        }

        var backing = Path.Combine(Path.GetTempPath(), $"bbloop-{Guid.NewGuid():N}.img");
        using (var f = File.Create(backing))
        {
            f.SetLength(size);
        }

        var (code, output) = Shell.Run("losetup", "--find", "--show", backing);
        if (code != 0)
        {
            File.Delete(backing);
            WhyNot = "losetup failed: " + output;
            return null;
        }

        return new LoopDevice(output, backing);
    }

    public void Dispose()
    {
        Shell.Run("losetup", "-d", Device);
        File.Delete(BackingFile);
    }
}

/// <summary>A filesystem made on a loop device and mounted (e.g. XFS for reflink clones).</summary>
internal sealed class LoopFilesystem : IDisposable
{
    public static string WhyNot { get; private set; } = "";

    private readonly string _image;

    private LoopFilesystem(string image, string mountPoint)
    {
        _image = image;
        MountPoint = mountPoint;
    }

    public string MountPoint { get; }

    public static LoopFilesystem? TryCreate(string type)
    {
        if (!Shell.IsRoot)
        {
            WhyNot = "mounting a loop filesystem needs root";
            return null;
        }

        var image = Path.Combine(Path.GetTempPath(), $"bbfs-{Guid.NewGuid():N}.img");
        var mount = image + ".mnt";
        using (var f = File.Create(image))
        {
            f.SetLength(512L << 20);
        }

        Directory.CreateDirectory(mount);
        var mkfs = Shell.Run($"mkfs.{type}", "-q", image);
        var mounted = mkfs.Code == 0 ? Shell.Run("mount", "-o", "loop", image, mount) : mkfs;
        if (mounted.Code != 0)
        {
            WhyNot = $"cannot make and mount {type} on a loop device ({mounted.Output}); install xfsprogs and run as root";
            Directory.Delete(mount);
            File.Delete(image);
            return null;
        }

        return new LoopFilesystem(image, mount);
    }

    public void Dispose()
    {
        Shell.Run("umount", MountPoint);
        Directory.Delete(MountPoint, recursive: true);
        File.Delete(_image);
    }
}
