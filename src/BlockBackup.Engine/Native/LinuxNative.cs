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

    [LibraryImport("libc", EntryPoint = "link", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int link_path(string existing, string newPath);

    [LibraryImport("libc", EntryPoint = "flock", SetLastError = true)]
    private static partial int flock_fd(int fd, int operation);

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int statx_path(int dirfd, string path, int flags, uint mask, out Statx buffer);

    /// <summary>struct statx (the same layout on every architecture, unlike struct stat): the fields used here.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 256)]
    private struct Statx
    {
        [FieldOffset(28)] public ushort Mode;
        [FieldOffset(32)] public ulong Inode;
        [FieldOffset(136)] public uint DevMajor;
        [FieldOffset(140)] public uint DevMinor;
    }

    private const int FSetPipeSize = 1031;
    private const int EEXIST = 17, ENOENT = 2;
    private const int LockExclusive = 2;
    private const int LockNonBlocking = 4;
    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const int AtEmptyPath = 0x1000;
    private const uint StatxType = 0x1, StatxIno = 0x100;
    private const int FileTypeMask = 0xF000, RegularFile = 0x8000;
    private const int ONonBlock = 0x800;

    /// <summary>O_NOFOLLOW and O_DIRECTORY differ between architectures: ARM has its own values (there 0x10000 is O_DIRECT, which directories refuse).</summary>
    private static bool ArmFlags => RuntimeInformation.ProcessArchitecture is Architecture.Arm64 or Architecture.Arm;

    private static int ONoFollow => ArmFlags ? 0x8000 : 0x20000;

    private static int ODirectory => ArmFlags ? 0x4000 : 0x10000;

    private const int ORdOnly = 0;

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
    /// fsync(2) that reports failure: .NET's FileStream.Flush(flushToDisk: true) returns normally
    /// when fsync fails (ENOSPC, EDQUOT, EIO: seen with .NET 10 on Linux), which would let a backup
    /// commit data the file system never stored (on NFS a full share is often only reported here).
    /// Files that cannot be synchronised at all (EINVAL, ENOTSUP) have nothing to flush.
    /// </summary>
    public static void FlushToDisk(SafeFileHandle handle, string path)
    {
        if (fsync(Fd(handle)) == 0)
        {
            return;
        }

        var errno = Marshal.GetLastPInvokeError();
        if (errno is not (EINVAL or ENOTSUP))
        {
            throw new IOException($"Flushing '{path}' to disk failed: {Marshal.GetPInvokeErrorMessage(errno)}", errno);
        }
    }

    private const int EINVAL = 22, ENOTSUP = 95;

    /// <summary>A handle on a directory (for syncfs and fsync); null when it cannot be opened.</summary>
    public static SafeFileHandle? OpenDirectory(string directory)
    {
        var fd = open_path(directory, ORdOnly | ODirectory | OCloexec);
        return fd < 0 ? null : new SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>
    /// syncfs(2) through <paramref name="directory"/>, reporting failure: every file written on its
    /// file system is durable, or the writeback errors since the handle was opened are thrown.
    /// </summary>
    public static void SyncFileSystem(SafeFileHandle directory, string path)
    {
        if (syncfs(Fd(directory)) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new IOException($"Flushing the file system of '{path}' to disk failed: {Marshal.GetPInvokeErrorMessage(errno)}", errno);
        }

        fsync(Fd(directory)); // its entries too, best effort (see TrySyncDirectory)
    }

    /// <summary>
    /// Makes a directory's entries durable (fsync of the directory: renames survive a crash).
    /// .NET cannot open directories, hence open(2) here. Best effort: some file systems cannot
    /// sync a directory (EINVAL), and the files' data was made durable before their renames.
    /// </summary>
    public static bool TrySyncDirectory(string directory)
    {
        if (!IsLinux)
        {
            return false;
        }

        using var handle = OpenDirectory(directory);
        return handle is not null && fsync(Fd(handle)) == 0;
    }

    /// <summary>
    /// Gives <paramref name="existing"/> a second name; fails with EEXIST, atomically (NFS too),
    /// when <paramref name="newPath"/> exists. False with the errno otherwise.
    /// </summary>
    public static bool TryLink(string existing, string newPath, out int errno)
    {
        errno = 0;
        if (link_path(existing, newPath) == 0)
        {
            return true;
        }

        errno = Marshal.GetLastPInvokeError();
        return false;
    }

    public static bool IsAlreadyExists(int errno) => errno == EEXIST;

    /// <summary>ENOENT: a path (for link(2), its source) does not exist.</summary>
    public static bool IsNotFound(int errno) => errno == ENOENT;

    /// <summary>The file system has no hard links (EPERM on vfat and some SMB, EOPNOTSUPP, ENOSYS) or the file has too many.</summary>
    public static bool IsLinkUnsupported(int errno) => errno is 1 or 95 or 38 or 31;

    /// <summary>Takes an exclusive flock without waiting; false when another open file holds a lock on it.</summary>
    public static bool TryLockExclusive(SafeFileHandle handle) => flock_fd(Fd(handle), LockExclusive | LockNonBlocking) == 0;

    /// <summary>Opens for reading without following a final symbolic link (that fails) and without blocking on a FIFO; null when it cannot be opened.</summary>
    public static SafeFileHandle? OpenNoFollow(string path)
    {
        var fd = open_path(path, ORdOnly | ONoFollow | ONonBlock | OCloexec);
        return fd < 0 ? null : new SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>The file an open handle refers to: whether it is a regular file, and its identity (device, inode).</summary>
    public static (bool RegularFile, (uint, uint, ulong) Identity)? Describe(SafeFileHandle handle) =>
        statx_path(Fd(handle), string.Empty, AtEmptyPath, StatxType | StatxIno, out var b) == 0
            ? ((b.Mode & FileTypeMask) == RegularFile, (b.DevMajor, b.DevMinor, b.Inode))
            : null;

    /// <summary>What a path names, without following a final symbolic link (see <see cref="Describe(SafeFileHandle)"/>).</summary>
    public static (bool RegularFile, (uint, uint, ulong) Identity)? DescribeNoFollow(string path) =>
        statx_path(AtFdCwd, path, AtSymlinkNoFollow, StatxType | StatxIno, out var b) == 0
            ? ((b.Mode & FileTypeMask) == RegularFile, (b.DevMajor, b.DevMinor, b.Inode))
            : null;

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
