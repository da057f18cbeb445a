using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace BlockBackup.Engine.Native;

/// <summary>
/// The few Linux system calls .NET does not wrap: sparse-file navigation, the size of a block
/// device, reflink clones, hole punching and a filesystem-wide sync. Every caller checks
/// <see cref="IsLinux"/> and has a portable fallback.
/// </summary>
internal static partial class LinuxNative
{
    public static bool IsLinux => OperatingSystem.IsLinux();

    private const int SeekData = 3;
    private const int SeekHole = 4;
    private const int ENXIO = 6;
    private const ulong BlkGetSize64 = 0x80081272;
    private const ulong FiClone = 0x40049409;
    private const int FallocFlPunchHole = 0x02;
    private const int FallocFlKeepSize = 0x01;

    [LibraryImport("libc", SetLastError = true)]
    private static partial long lseek(int fd, long offset, int whence);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int ioctl(int fd, ulong request, out ulong value);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int ioctl_int(int fd, ulong request, int value);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fallocate(int fd, int mode, long offset, long length);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int syncfs(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fsync(int fd);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open_path(string path, int flags);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int close(int fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int sync_file_range(int fd, long offset, long nbytes, uint flags);

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static partial int fcntl_int(int fd, int command, int argument);

    private const int FSetPipeSize = 1031;

    private const int ORdOnly = 0;
    private const int ODirectory = 0x10000;
    private const int OCloexec = 0x80000;
    private const uint SyncFileRangeWrite = 2;

    private static int Fd(SafeFileHandle handle) => (int)handle.DangerousGetHandle();

    /// <summary>The size of a block device, or null when the handle is not one.</summary>
    public static long? BlockDeviceSize(SafeFileHandle handle)
    {
        if (!IsLinux)
        {
            return null;
        }

        return ioctl(Fd(handle), BlkGetSize64, out var size) == 0 ? (long)size : null;
    }

    /// <summary>
    /// Next data region at or after <paramref name="offset"/>: (start, end) or null when only a
    /// hole remains. Returns (offset, limit) when the filesystem cannot tell (treat as data).
    /// </summary>
    public static (long Start, long End)? NextData(SafeFileHandle handle, long offset, long limit)
    {
        if (!IsLinux)
        {
            return (offset, limit);
        }

        var fd = Fd(handle);
        var start = lseek(fd, offset, SeekData);
        if (start < 0)
        {
            return Marshal.GetLastPInvokeError() == ENXIO ? null : (offset, limit);
        }

        if (start >= limit)
        {
            return null;
        }

        var end = lseek(fd, start, SeekHole);
        if (end < 0)
        {
            end = limit;
        }

        return (start, Math.Min(end, limit));
    }

    /// <summary>Makes <paramref name="destination"/> share <paramref name="source"/>'s extents (XFS, btrfs). False when unsupported.</summary>
    public static bool TryReflink(SafeFileHandle destination, SafeFileHandle source, out int errno)
    {
        errno = 0;
        if (!IsLinux)
        {
            return false;
        }

        if (ioctl_int(Fd(destination), FiClone, Fd(source)) == 0)
        {
            return true;
        }

        errno = Marshal.GetLastPInvokeError();
        return false;
    }

    /// <summary>Deallocates a range of a regular file, keeping its size; false when unsupported.</summary>
    public static bool TryPunchHole(SafeFileHandle handle, long offset, long length) =>
        IsLinux && fallocate(Fd(handle), FallocFlPunchHole | FallocFlKeepSize, offset, length) == 0;

    /// <summary>
    /// Makes a directory's entries durable (fsync of the directory: renames survive a crash) and,
    /// with <paramref name="wholeFilesystem"/>, every file written on its filesystem (syncfs).
    /// .NET cannot open directories, hence open(2) here.
    /// </summary>
    public static bool TrySyncDirectory(string directory, bool wholeFilesystem)
    {
        if (!IsLinux)
        {
            return false;
        }

        var fd = open_path(directory, ORdOnly | ODirectory | OCloexec);
        if (fd < 0)
        {
            return false;
        }

        try
        {
            return (!wholeFilesystem || syncfs(fd) == 0) && fsync(fd) == 0;
        }
        finally
        {
            close(fd);
        }
    }

    /// <summary>Grows a pipe's buffer (default 64 KiB) so a fast producer is not woken per 64 KiB; best effort.</summary>
    public static void TryGrowPipe(SafeHandle pipe, int bytes)
    {
        if (IsLinux)
        {
            fcntl_int((int)pipe.DangerousGetHandle(), FSetPipeSize, bytes);
        }
    }

    /// <summary>Starts writeback of a file's dirty pages without waiting, so a later sync has little left to do.</summary>
    public static void StartWriteback(SafeFileHandle handle)
    {
        if (IsLinux)
        {
            sync_file_range(Fd(handle), 0, 0, SyncFileRangeWrite);
        }
    }
}
