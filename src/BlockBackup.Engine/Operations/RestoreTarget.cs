using BlockBackup.Engine.Consistency;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Native;
using BlockBackup.Engine.Volumes;
using Microsoft.Win32.SafeHandles;

namespace BlockBackup.Engine.Operations;

/// <summary>
/// The file or block device a restore writes to. A new file is written sparse (zero blocks are
/// skipped); an existing target is written exactly (zero ranges are punched or zero-filled), so
/// the result never depends on what the target held before. A new file is written under a
/// temporary name beside it and renamed into place by <see cref="Commit"/>, so an interrupted or
/// failed restore never leaves a file that looks complete; an existing file or device is written
/// in place (it is partial until the restore completes).
/// </summary>
internal sealed class RestoreTarget : IDisposable
{
    private readonly FileStream _stream;
    private readonly string? _temporaryPath;
    private bool _committed;

    private RestoreTarget(string path, FileStream stream, bool isNew, bool isBlockDevice, string? temporaryPath)
    {
        Path = path;
        _stream = stream;
        IsNew = isNew;
        IsBlockDevice = isBlockDevice;
        _temporaryPath = temporaryPath;
    }

    public string Path { get; }

    /// <summary>Whether the restore writes into what was already there (then a failure leaves it partial).</summary>
    public bool WritesInPlace => _temporaryPath is null;
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
                $"The target '{fullPath}' already holds data{(state.IsBlockDevice ? " (it is a block device)" : string.Empty)}. Restoring would overwrite it; pass -Force to allow that.", fullPath);
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

        if (!isDevice)
        {
            RemoveAbandonedTemporaries(full);
        }

        var temporary = exists ? null : TemporaryName(full);
        // A new file's temporary is held (flock) while the restore writes it: one whose lock is
        // free was left by a killed restore, and the next restore to this target removes it.
        var stream = temporary is not null ? HeldFile.Create(temporary, FileAccess.ReadWrite, mode: null) : new FileStream(full, FileMode.Open, FileAccess.ReadWrite, FileShare.Read, 0);
        try
        {
            if (!isDevice)
            {
                stream.SetLength(volumeSize);
            }

            return new RestoreTarget(full, stream, !exists || !holdsData, isDevice, temporary);
        }
        catch
        {
            stream.Dispose();
            if (temporary is not null)
            {
                File.Delete(temporary);
            }

            throw;
        }
    }

    private const string TemporaryMarker = ".blockbackup-restore-";

    /// <summary>A hidden name beside the target that says what it is, should a kill leave it behind.</summary>
    private static string TemporaryName(string full)
    {
        var name = $".{System.IO.Path.GetFileName(full)}{TemporaryMarker}{Guid.NewGuid():N}";
        return System.IO.Path.Combine(System.IO.Path.GetDirectoryName(full) ?? ".", name.Length <= 255 ? name : name[^255..]);
    }

    /// <summary>
    /// Temporaries of earlier restores to this very target that were killed: only regular files
    /// beside it named exactly as its temporaries are, whose lock is free (never a link, never
    /// another target's, never one a running restore holds).
    /// </summary>
    private static void RemoveAbandonedTemporaries(string full)
    {
        var name = $".{System.IO.Path.GetFileName(full)}{TemporaryMarker}";
        if (name.Length + 32 > 255)
        {
            return; // such names were cut at the front (see TemporaryName): not recognisable exactly
        }

        var pattern = new System.Text.RegularExpressions.Regex($"^{System.Text.RegularExpressions.Regex.Escape(name)}[0-9a-f]{{32}}$", System.Text.RegularExpressions.RegexOptions.CultureInvariant);
        HeldFile.RemoveAbandoned(System.IO.Path.GetDirectoryName(full) ?? ".", pattern, failed: null);
    }

    /// <summary>
    /// Flushes the data to disk and, for a new file, moves it into place (refusing to replace a
    /// file that appeared meanwhile). Until then a new target does not exist under its name.
    /// </summary>
    public void Commit()
    {
        try
        {
            Repository.AtomicFile.FlushToDisk(_stream);
        }
        catch (IOException ex)
        {
            // Not put in place (a new target) or not known to be complete (one written in place).
            throw StorageFault.Classify(ex, $"Writing the restore target '{Path}'")
                ?? new BackupException(BackupErrorKind.WriteError, "RestoreWriteFailed", $"Writing the restore target '{Path}' to disk failed: {ex.Message}", Path, ex);
        }
        if (_temporaryPath is not null)
        {
            // Renamed while still held where that is possible, so no other restore can take it for a leftover.
            if (OperatingSystem.IsWindows())
            {
                _stream.Dispose();
            }

            try
            {
                File.Move(_temporaryPath, Path, overwrite: false);
                _stream.Dispose();
                Repository.AtomicFile.SyncDirectory(System.IO.Path.GetDirectoryName(Path)!);
            }
            catch (IOException ex) when (File.Exists(Path))
            {
                _committed = true;   // keep the restored data where the message says it is
                throw new BackupException(BackupErrorKind.InvalidOperation, "TargetAppeared",
                    $"The restore target '{Path}' was created by someone else while the restore ran; the restored data is left in '{_temporaryPath}'.", Path, ex);
            }
        }

        _committed = true;
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

    public void Dispose()
    {
        _stream.Dispose();
        if (!_committed && _temporaryPath is not null)
        {
            try
            {
                File.Delete(_temporaryPath);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // The restore's own failure is what the caller reports; a leftover keeps its telling name.
            }
        }
    }
}
