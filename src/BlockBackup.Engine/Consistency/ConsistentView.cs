using System.Diagnostics;
using System.Text.RegularExpressions;
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
    private const string CloneMarker = ".blockbackup-clone-";

    private readonly Action? _cleanup;
    private FileStream? _clone;
    private int _disposed;

    private ConsistentView(string readPath, ConsistencyMethod method, string detail, Action? cleanup, FileStream? clone = null)
    {
        ReadPath = readPath;
        Method = method;
        Detail = detail;
        _cleanup = cleanup;
        _clone = clone;
    }

    /// <summary>What to read: the clone or snapshot, or the volume itself.</summary>
    public string ReadPath { get; }
    public ConsistencyMethod Method { get; }
    public string Detail { get; }

    /// <summary>
    /// For a clone: the handle to read it through. It holds the clone's lock (so a clone whose
    /// lock is free is provably a leftover); opening the clone again by name would meet that lock.
    /// </summary>
    public Microsoft.Win32.SafeHandles.SafeFileHandle? ReadHandle => _clone?.SafeFileHandle;

    /// <summary>
    /// The name a reflink clone of the image will get, or null when none will be tried (a block
    /// device, snapshots not allowed, not Linux). Chosen before the backup records it as in
    /// flight, so that the record exists before the clone does.
    /// </summary>
    public static string? PlanClone(string resolvedPath, bool isBlockDevice, bool allowSnapshot) =>
        allowSnapshot && !isBlockDevice && LinuxNative.IsLinux
            ? Path.Combine(Path.GetDirectoryName(resolvedPath)!, $".{Path.GetFileName(resolvedPath)}{CloneMarker}{Guid.NewGuid():N}")
            : null;

    /// <summary>
    /// Takes the best point-in-time copy the platform offers, else checks that reading directly
    /// is safe. A reflink clone is tried only at <paramref name="clonePath"/> (from
    /// <see cref="PlanClone"/>), none without it.
    /// </summary>
    public static ConsistentView Acquire(string resolvedPath, bool isBlockDevice, bool force, bool allowSnapshot = true, string? clonePath = null)
    {
        if (allowSnapshot && !isBlockDevice && clonePath is not null && TryReflinkClone(resolvedPath, clonePath) is { } clone)
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

    /// <summary>
    /// The clone is created beside the image and locked (flock) for as long as the backup reads
    /// it; a kill leaves it behind unlocked, which is how <see cref="RemoveAbandonedClones"/>
    /// and cleanup tell it from the clone of a backup still running (from another repository,
    /// say).
    /// </summary>
    private static ConsistentView? TryReflinkClone(string path, string clonePath)
    {
        FileStream? clone = null;
        try
        {
            using var source = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            // Private to the backup's user: a copy of the volume's data, whatever the image's mode.
            clone = HeldFile.Create(clonePath, FileAccess.ReadWrite, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            if (LinuxNative.TryReflink(clone.SafeFileHandle, source, out _))
            {
                var held = clone;
                clone = null;
                return new ConsistentView(clonePath, ConsistencyMethod.ReflinkClone, $"reflink clone {clonePath}", () => File.Delete(clonePath), held);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // No write access beside the image: no clone, fall through to the direct checks.
        }
        finally
        {
            if (clone is not null)
            {
                TryDelete(clonePath); // ours: created just now, still locked
                clone.Dispose();
            }
        }

        return null;
    }

    /// <summary>Whole names of the image's clones: exactly ".{image}.blockbackup-clone-{32 hex digits}".</summary>
    private static Regex ClonesOf(string imageName) =>
        new($"^\\.{Regex.Escape(imageName)}{Regex.Escape(CloneMarker)}[0-9a-f]{{32}}$", RegexOptions.CultureInvariant);

    /// <summary>
    /// Removes the clones of this image that killed backups left beside it: only regular files
    /// (links are neither followed nor deleted) in the image's own directory, named exactly as
    /// its clones are, whose lock can be taken (the backup that made them is gone). Says what it
    /// removed, or could not remove, through <paramref name="log"/>.
    /// </summary>
    public static IReadOnlyList<string> RemoveAbandonedClones(string resolvedPath, Action<string>? log)
    {
        if (!LinuxNative.IsLinux)
        {
            return [];
        }

        var removed = HeldFile.RemoveAbandoned(Path.GetDirectoryName(resolvedPath)!, ClonesOf(Path.GetFileName(resolvedPath)),
            (clone, ex) => log?.Invoke($"Could not remove '{clone}', a reflink clone of the volume an interrupted backup left beside it: {ex.Message}"));
        foreach (var clone in removed)
        {
            log?.Invoke($"Removed '{clone}', a reflink clone of the volume an interrupted backup left beside it.");
        }

        return removed;
    }

    /// <summary>
    /// Removes a clone an in-flight record names (read from the repository: hostile input), only
    /// if the path is absolute and normal, is named exactly as clones are, and is a regular file
    /// whose lock is free. True when it was removed.
    /// </summary>
    public static bool RemoveRecordedClone(string? clonePath)
    {
        if (clonePath is null || !Path.IsPathFullyQualified(clonePath) || Path.GetFullPath(clonePath) != clonePath
            || !Regex.IsMatch(Path.GetFileName(clonePath), $"^\\..+{Regex.Escape(CloneMarker)}[0-9a-f]{{32}}$", RegexOptions.CultureInvariant))
        {
            return false;
        }

        try
        {
            return HeldFile.RemoveIfAbandoned(clonePath) == HeldFile.Found.Removed;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false; // kept: the next backup of that image removes it
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }
    }

    /// <summary>Removes the temporary copy (a clone: deleted while still locked, then closed). Idempotent.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        try
        {
            _cleanup?.Invoke();
        }
        finally
        {
            _clone?.Dispose();
            _clone = null;
        }
    }
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
