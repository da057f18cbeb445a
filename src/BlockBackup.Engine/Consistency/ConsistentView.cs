using System.Diagnostics;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Native;

namespace BlockBackup.Engine.Consistency;

/// <summary>
/// A point-in-time view of a volume for the duration of one backup, as Cinder's flow does it
/// (temporary snapshot → read → delete snapshot). Disposing removes the temporary copy, also
/// after a failure or cancellation.
/// </summary>
public sealed class ConsistentView : IDisposable
{
    private readonly Action? _cleanup;

    private ConsistentView(string readPath, ConsistencyMethod method, string detail, Action? cleanup)
    {
        ReadPath = readPath;
        Method = method;
        Detail = detail;
        _cleanup = cleanup;
    }

    /// <summary>What to read: the clone or snapshot, or the volume itself.</summary>
    public string ReadPath { get; }
    public ConsistencyMethod Method { get; }
    public string Detail { get; }

    /// <summary>Takes the best point-in-time copy the platform offers, else checks that reading directly is safe.</summary>
    public static ConsistentView Acquire(string resolvedPath, bool isBlockDevice, bool force, bool allowSnapshot = true)
    {
        if (allowSnapshot && !isBlockDevice && TryReflinkClone(resolvedPath) is { } clone)
        {
            return clone;
        }

        if (allowSnapshot && isBlockDevice && LvmSnapshot.TryCreate(resolvedPath) is { } lvm)
        {
            return new ConsistentView(lvm.SnapshotDevice, ConsistencyMethod.LvmSnapshot, $"LVM snapshot {lvm.SnapshotName} of {lvm.Origin}", lvm.Remove);
        }

        var inUse = InUseDetector.WhyInUse(resolvedPath, isBlockDevice);
        if (inUse is null)
        {
            return new ConsistentView(resolvedPath, ConsistencyMethod.Direct, "read directly; the volume was not in use", null);
        }

        if (!force)
        {
            throw new BackupException(BackupErrorKind.ResourceBusy, "VolumeInUse",
                $"The volume is in use ({inUse}) and no point-in-time snapshot can be taken of it here. Stop the writer, or use -Force to back it up anyway (the backup is then at best crash-consistent).",
                resolvedPath);
        }

        return new ConsistentView(resolvedPath, ConsistencyMethod.DirectForced, $"read directly while in use ({inUse}) because Force was given", null);
    }

    private static ConsistentView? TryReflinkClone(string path)
    {
        if (!LinuxNative.IsLinux)
        {
            return null;
        }

        var dir = Path.GetDirectoryName(path)!;
        var clonePath = Path.Combine(dir, $".{Path.GetFileName(path)}.blockbackup-clone-{Guid.NewGuid():N}");
        try
        {
            using var source = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            using var clone = File.OpenHandle(clonePath, FileMode.CreateNew, FileAccess.Write, FileShare.Read);
            if (LinuxNative.TryReflink(clone, source, out _))
            {
                return new ConsistentView(clonePath, ConsistencyMethod.ReflinkClone, $"reflink clone {clonePath}", () => File.Delete(clonePath));
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // No write access beside the image: no clone, fall through to the direct checks.
        }

        try
        {
            File.Delete(clonePath);
        }
        catch (IOException)
        {
        }

        return null;
    }

    public void Dispose() => _cleanup?.Invoke();
}

/// <summary>A temporary LVM snapshot through the lvm2 tools (argv lists, never a shell).</summary>
internal sealed record LvmSnapshot(string Origin, string SnapshotName, string SnapshotDevice, string VolumeGroup)
{
    public static LvmSnapshot? TryCreate(string device)
    {
        var info = Run("lvs", ["--noheadings", "--separator", "|", "-o", "vg_name,lv_name", device]);
        if (info is null || info.Split('|') is not [var vgRaw, var lvRaw])
        {
            return null;
        }

        var vg = vgRaw.Trim();
        var lv = lvRaw.Trim();
        var snap = $"{lv}-bbsnap-{Guid.NewGuid():N}"[..Math.Min(lv.Length + 20, 120)];
        if (Run("lvcreate", ["--snapshot", "--name", snap, "--extents", "10%ORIGIN", $"{vg}/{lv}"]) is null)
        {
            throw new BackupException(BackupErrorKind.WriteError, "LvmSnapshotFailed",
                $"Creating a temporary LVM snapshot of {vg}/{lv} failed (is there free space in volume group {vg}?).", device);
        }

        return new LvmSnapshot($"{vg}/{lv}", snap, $"/dev/{vg}/{snap}", vg);
    }

    public void Remove() => Run("lvremove", ["--force", $"{VolumeGroup}/{SnapshotName}"]);

    private static string? Run(string tool, string[] args)
    {
        try
        {
            var psi = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in args)
            {
                psi.ArgumentList.Add(a);
            }

            using var p = Process.Start(psi)!;
            var output = p.StandardOutput.ReadToEnd();
            p.StandardError.ReadToEnd();
            p.WaitForExit();
            return p.ExitCode == 0 ? output.Trim() : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null; // lvm2 not installed
        }
    }
}
