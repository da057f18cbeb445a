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

    /// <summary>One call that makes everything written on the file's filesystem durable.</summary>
    public static bool TrySyncFilesystem(SafeFileHandle handle) => IsLinux && syncfs(Fd(handle)) == 0;
}
