using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace BlockBackup.Engine.Native;

/// <summary>Who owns a file and what it is: the parts of stat(2) that .NET does not expose (the owner's uid).</summary>
internal readonly record struct PosixFileStatus(uint Uid, uint Mode)
{
    private const uint TypeMask = 0xF000, Directory = 0x4000, Regular = 0x8000, SymbolicLink = 0xA000, Socket = 0xC000;

    public bool IsDirectory => (Mode & TypeMask) == Directory;

    public bool IsRegularFile => (Mode & TypeMask) == Regular;

    public bool IsSymbolicLink => (Mode & TypeMask) == SymbolicLink;

    public bool IsSocket => (Mode & TypeMask) == Socket;

    public UnixFileMode Permissions => (UnixFileMode)(Mode & 0xFFF);
}

/// <summary>
/// stat(2), fstat(2), open(2) with O_NOFOLLOW, realpath(3) and geteuid(2) for the configuration
/// directory's trust checks, on Linux (statx: one layout on every architecture) and macOS
/// (struct stat with 64-bit inodes). Not for Windows: the callers skip the POSIX checks there.
/// </summary>
internal static partial class PosixFiles
{
    private const int AtFdCwd = -100, AtSymlinkNoFollow = 0x100, AtEmptyPath = 0x1000;
    private const uint StatxType = 0x1, StatxMode = 0x2, StatxUid = 0x8;
    private const int ELOOP = 40, EMLINK = 31, ENOENT = 2, MacELOOP = 62;

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int statx(int dirfd, string path, int flags, uint mask, out Statx buffer);

    /// <summary>struct statx: the fields used here (stx_uid at 20, stx_mode at 28).</summary>
    [StructLayout(LayoutKind.Explicit, Size = 256)]
    private struct Statx
    {
        [FieldOffset(20)] public uint Uid;
        [FieldOffset(28)] public ushort Mode;
    }

    /// <summary>Darwin's struct stat (64-bit inodes): st_mode at 4, st_uid at 16.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 144)]
    private struct DarwinStat
    {
        [FieldOffset(4)] public ushort Mode;
        [FieldOffset(16)] public uint Uid;
    }

    // x86-64 macOS keeps the 32-bit-inode functions under the plain names; arm64 has only the 64-bit ones.
    [LibraryImport("libc", EntryPoint = "lstat$INODE64", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int darwin_lstat_x64(string path, out DarwinStat buffer);

    [LibraryImport("libc", EntryPoint = "stat$INODE64", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int darwin_stat_x64(string path, out DarwinStat buffer);

    [LibraryImport("libc", EntryPoint = "fstat$INODE64", SetLastError = true)]
    private static partial int darwin_fstat_x64(int fd, out DarwinStat buffer);

    [LibraryImport("libc", EntryPoint = "lstat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int darwin_lstat(string path, out DarwinStat buffer);

    [LibraryImport("libc", EntryPoint = "stat", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int darwin_stat(string path, out DarwinStat buffer);

    [LibraryImport("libc", EntryPoint = "fstat", SetLastError = true)]
    private static partial int darwin_fstat(int fd, out DarwinStat buffer);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open_path(string path, int flags);

    [LibraryImport("libc", EntryPoint = "realpath", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial IntPtr realpath_path(string path, IntPtr resolved);

    [LibraryImport("libc", EntryPoint = "free")]
    private static partial void free(IntPtr pointer);

    [LibraryImport("libc", EntryPoint = "geteuid")]
    private static partial uint geteuid_call();

    private static bool DarwinX64 => OperatingSystem.IsMacOS() && RuntimeInformation.ProcessArchitecture == Architecture.X64;

    /// <summary>The effective user id of this process.</summary>
    public static uint EffectiveUid => geteuid_call();

    /// <summary>A path's status (a final symbolic link itself when <paramref name="followLink"/> is false); null when it does not exist.</summary>
    public static PosixFileStatus? Of(string path, bool followLink)
    {
        int result;
        PosixFileStatus status;
        if (OperatingSystem.IsMacOS())
        {
            DarwinStat b;
            result = followLink ? (DarwinX64 ? darwin_stat_x64(path, out b) : darwin_stat(path, out b)) : (DarwinX64 ? darwin_lstat_x64(path, out b) : darwin_lstat(path, out b));
            status = new PosixFileStatus(b.Uid, b.Mode);
        }
        else
        {
            result = statx(AtFdCwd, path, followLink ? 0 : AtSymlinkNoFollow, StatxType | StatxMode | StatxUid, out var b);
            status = new PosixFileStatus(b.Uid, b.Mode);
        }

        return result == 0 ? status : Marshal.GetLastPInvokeError() == ENOENT ? null : throw Failed("stat", path);
    }

    /// <summary>The status of the file an open handle refers to (fstat: no path is looked up again).</summary>
    public static PosixFileStatus Of(SafeFileHandle handle, string path)
    {
        var fd = (int)handle.DangerousGetHandle();
        if (OperatingSystem.IsMacOS())
        {
            DarwinStat b;
            return (DarwinX64 ? darwin_fstat_x64(fd, out b) : darwin_fstat(fd, out b)) == 0 ? new PosixFileStatus(b.Uid, b.Mode) : throw Failed("fstat", path);
        }

        return statx(fd, string.Empty, AtEmptyPath, StatxType | StatxMode | StatxUid, out var s) == 0 ? new PosixFileStatus(s.Uid, s.Mode) : throw Failed("fstat", path);
    }

    /// <summary>
    /// Opens for reading without following a final symbolic link and without blocking on a FIFO.
    /// Null when there is no such file; <paramref name="isLink"/> when the final name is a symbolic link.
    /// </summary>
    public static SafeFileHandle? OpenReadNoFollow(string path, out bool isLink)
    {
        isLink = false;
        // O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC: the values differ between Linux (ARM has its own O_NOFOLLOW) and macOS.
        var flags = OperatingSystem.IsMacOS() ? 0x100 | 0x4 | 0x1000000
            : (RuntimeInformation.ProcessArchitecture is Architecture.Arm64 or Architecture.Arm ? 0x8000 : 0x20000) | 0x800 | 0x80000;
        var fd = open_path(path, flags);
        if (fd >= 0)
        {
            return new SafeFileHandle(fd, ownsHandle: true);
        }

        var errno = Marshal.GetLastPInvokeError();
        if (errno == ENOENT)
        {
            return null;
        }

        // Linux says ELOOP for a final symbolic link under O_NOFOLLOW (EMLINK on some BSDs); macOS ELOOP is 62.
        if (errno is ELOOP or EMLINK or MacELOOP)
        {
            isLink = true;
            return null;
        }

        throw Failed("open", path, errno);
    }

    /// <summary>The canonical path (every symbolic link resolved); null when some part does not exist.</summary>
    public static string? RealPath(string path)
    {
        var resolved = realpath_path(path, IntPtr.Zero);
        if (resolved == IntPtr.Zero)
        {
            return Marshal.GetLastPInvokeError() == ENOENT ? null : throw Failed("realpath", path);
        }

        try
        {
            return Marshal.PtrToStringUTF8(resolved);
        }
        finally
        {
            free(resolved);
        }
    }

    /// <summary>EACCES and EPERM as .NET reports them (UnauthorizedAccessException), anything else as an IOException.</summary>
    private static Exception Failed(string call, string path, int? errno = null)
    {
        var code = errno ?? Marshal.GetLastPInvokeError();
        var message = $"{call} '{path}': {Marshal.GetPInvokeErrorMessage(code)}";
        return code is 1 or 13 ? new UnauthorizedAccessException(message) : new IOException(message, code);
    }
}
