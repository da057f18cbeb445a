using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Native;
using Microsoft.Win32.SafeHandles;

namespace BlockBackup.Engine.Volumes;

/// <summary>
/// A volume to read: a raw image file or a block device. The size of a device comes from the
/// device; unallocated ranges of sparse files are found with SEEK_DATA/SEEK_HOLE and never read.
/// </summary>
public sealed class VolumeSource : IDisposable
{
    private readonly bool _ownsHandle;

    private VolumeSource(string path, SafeFileHandle handle, long size, bool isBlockDevice, bool ownsHandle = true)
    {
        Path = path;
        Handle = handle;
        Size = size;
        IsBlockDevice = isBlockDevice;
        _ownsHandle = ownsHandle;
    }

    /// <summary>
    /// Reads a regular file through a handle someone else keeps (a reflink clone, read through
    /// the very handle that holds its lock: opening it again would meet that lock).
    /// </summary>
    internal static VolumeSource Borrow(string path, SafeFileHandle handle) =>
        new(path, handle, RandomAccess.GetLength(handle), isBlockDevice: false, ownsHandle: false);

    public string Path { get; }
    public long Size { get; }
    public bool IsBlockDevice { get; }
    internal SafeFileHandle Handle { get; }

    public static VolumeSource Open(string path)
    {
        // Checked first: opening a directory fails as "access denied", which misleads (as root, too).
        if (Directory.Exists(path))
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "VolumeIsDirectory", $"'{path}' is a directory, not a volume: give an image file or a block device.", path);
        }

        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new BackupException(BackupErrorKind.NotFound, "VolumeNotFound", $"The volume '{path}' does not exist.", path, ex);
        }
        catch (UnauthorizedAccessException ex)
        {
            throw new BackupException(BackupErrorKind.ReadError, "VolumeAccessDenied", $"The volume '{path}' cannot be opened for reading: {ex.Message} Run as a user that can read it (block devices usually need root).", path, ex);
        }
        catch (IOException ex)
        {
            throw new BackupException(BackupErrorKind.ReadError, "VolumeOpenFailed", $"The volume '{path}' cannot be opened: {ex.Message}", path, ex);
        }

        var deviceSize = LinuxNative.BlockDeviceSize(handle);
        var size = deviceSize ?? RandomAccess.GetLength(handle);
        return new VolumeSource(path, handle, size, deviceSize is not null);
    }

    /// <summary>Reads exactly buffer.Length bytes at offset (the range must lie inside the volume).</summary>
    public void ReadExactly(Span<byte> buffer, long offset)
    {
        var done = 0;
        while (done < buffer.Length)
        {
            int n;
            try
            {
                n = RandomAccess.Read(Handle, buffer[done..], offset + done);
            }
            catch (IOException ex)
            {
                throw new BackupException(BackupErrorKind.ReadError, "VolumeReadFailed", $"Reading volume '{Path}' at offset {offset + done} failed: {ex.Message}", Path, ex);
            }

            if (n == 0)
            {
                throw new BackupException(BackupErrorKind.ReadError, "VolumeShrank", $"Volume '{Path}' ended at offset {offset + done}, before its size {Size}; it was truncated during the backup.", Path);
            }

            done += n;
        }
    }

    /// <summary>
    /// Fills <paramref name="buffer"/> with the volume's bytes at <paramref name="offset"/>,
    /// reading only allocated ranges and zero-filling holes. Adds the data ranges read (relative
    /// to <paramref name="offset"/>) to <paramref name="dataRanges"/>; an empty list means the
    /// whole range is a hole and the buffer was not touched at all.
    /// </summary>
    public long ReadSparse(Span<byte> buffer, long offset, List<(int Start, int End)> dataRanges)
    {
        dataRanges.Clear();
        var end = offset + buffer.Length;
        var pos = offset;
        while (pos < end && (IsBlockDevice ? (pos, end) : LinuxNative.NextData(Handle, pos, end)) is { } d)
        {
            dataRanges.Add(((int)(d.Start - offset), (int)(d.End - offset)));
            pos = d.End;
        }

        if (dataRanges.Count == 0)
        {
            return 0;
        }

        long read = 0;
        var previous = 0;
        foreach (var (start, stop) in dataRanges)
        {
            buffer[previous..start].Clear();
            ReadExactly(buffer[start..stop], offset + start);
            read += stop - start;
            previous = stop;
        }

        buffer[previous..].Clear();
        return read;
    }

    public void Dispose()
    {
        if (_ownsHandle)
        {
            Handle.Dispose();
        }
    }
}
