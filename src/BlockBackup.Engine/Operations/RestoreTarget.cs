using BlockBackup.Engine.Consistency;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Native;
using BlockBackup.Engine.Volumes;
using Microsoft.Win32.SafeHandles;

namespace BlockBackup.Engine.Operations;

/// <summary>
/// The file or block device a restore writes to. A new file is written sparse (zero blocks are
/// skipped); an existing target is written exactly (zero ranges are punched or zero-filled), so
/// the result never depends on what the target held before.
/// </summary>
internal sealed class RestoreTarget : IDisposable
{
    private readonly FileStream _stream;

    private RestoreTarget(string path, FileStream stream, bool isNew, bool isBlockDevice)
    {
        Path = path;
        _stream = stream;
        IsNew = isNew;
        IsBlockDevice = isBlockDevice;
    }

    public string Path { get; }
    public bool IsNew { get; }
    public bool IsBlockDevice { get; }
    public SafeFileHandle Handle => _stream.SafeFileHandle;

    /// <summary>Inspects the target without opening it for writing (for decisions and -WhatIf).</summary>
    public static (bool Exists, bool HoldsData, bool IsBlockDevice, long Size) Inspect(string path)
    {
        if (!File.Exists(path))
        {
            if (Directory.Exists(path))
            {
                throw new BackupException(BackupErrorKind.InvalidArgument, "TargetIsDirectory", $"The restore target '{path}' is a directory; give a file or block device path.", path);
            }

            return (false, false, false, 0);
        }

        using var volume = VolumeSource.Open(path);
        // A block device is assumed to hold data; a file holds data when any range is allocated.
        var holdsData = volume.IsBlockDevice || (volume.Size > 0 && LinuxNative.NextData(volume.Handle, 0, volume.Size) is not null);
        return (true, holdsData, volume.IsBlockDevice, volume.Size);
    }

    /// <summary>Refuses a target that holds data unless overwriting was allowed.</summary>
    public static void RefuseToOverwrite(string fullPath, (bool Exists, bool HoldsData, bool IsBlockDevice, long Size) state, bool overwrite)
    {
        if (state.HoldsData && !overwrite)
        {
            throw new BackupException(BackupErrorKind.InvalidOperation, "TargetHasData",
                $"The target '{fullPath}' already holds data{(state.IsBlockDevice ? " (it is a block device)" : string.Empty)}. Restoring would overwrite it; pass Force to allow that.", fullPath);
        }
    }

    /// <summary>Opens the target; <paramref name="inspected"/> is an earlier <see cref="Inspect"/> of it, when the caller has one.</summary>
    public static RestoreTarget Open(string path, long volumeSize, bool overwrite, (bool Exists, bool HoldsData, bool IsBlockDevice, long Size)? inspected = null)
    {
        var full = System.IO.Path.GetFullPath(path);
        var state = inspected ?? Inspect(full);
        var (exists, holdsData, isDevice, size) = state;
        if (isDevice && size < volumeSize)
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "TargetTooSmall",
                $"The target device '{full}' has {size} bytes but the backup's volume has {volumeSize}; restore to a device at least that large.", full);
        }

        RefuseToOverwrite(full, state, overwrite);

        if (exists)
        {
            var resolved = VolumeIdentity.ResolvePath(full);
            if (InUseDetector.WhyInUse(resolved, isDevice) is { } inUse)
            {
                throw new BackupException(BackupErrorKind.ResourceBusy, "TargetInUse",
                    $"The target is in use ({inUse}); restoring under a running user would corrupt it. Unmount it or stop the writer first.", full);
            }
        }
        else
        {
            var dir = System.IO.Path.GetDirectoryName(full);
            if (dir is not null && !Directory.Exists(dir))
            {
                throw new BackupException(BackupErrorKind.NotFound, "TargetDirectoryNotFound", $"The directory of restore target '{full}' does not exist.", full);
            }
        }

        var stream = new FileStream(full, exists ? FileMode.Open : FileMode.CreateNew, FileAccess.ReadWrite, FileShare.Read, 0);
        try
        {
            if (!isDevice)
            {
                stream.SetLength(volumeSize);
            }

            return new RestoreTarget(full, stream, !exists || !holdsData, isDevice);
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    public void Write(ReadOnlySpan<byte> data, long offset) => RandomAccess.Write(Handle, data, offset);

    /// <summary>Makes [offset, offset+length) read as zeros: nothing on a new file, a hole or zeros otherwise.</summary>
    public void Zero(long offset, long length, byte[] zeroBuffer)
    {
        if (IsNew || length == 0)
        {
            return;
        }

        if (!IsBlockDevice && LinuxNative.TryPunchHole(Handle, offset, length))
        {
            return;
        }

        for (var pos = offset; pos < offset + length;)
        {
            var n = (int)Math.Min(zeroBuffer.Length, offset + length - pos);
            RandomAccess.Write(Handle, zeroBuffer.AsSpan(0, n), pos);
            pos += n;
        }
    }

    public void Flush() => _stream.Flush(flushToDisk: true);

    public void Dispose() => _stream.Dispose();
}
