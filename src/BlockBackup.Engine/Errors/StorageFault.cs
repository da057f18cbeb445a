namespace BlockBackup.Engine.Errors;

/// <summary>
/// Recognises the storage faults users must act on (a full or read-only file system) in the
/// IOExceptions .NET throws, so they are reported as such instead of as a raw I/O error. On Unix
/// .NET puts the errno in HResult; on Windows the Win32 error in its low word.
/// </summary>
public static class StorageFault
{
    private const int ENOSPC = 28, EROFS = 30, EDQUOT = 122;
    private const int ERROR_WRITE_PROTECT = 19, ERROR_HANDLE_DISK_FULL = 39, ERROR_DISK_FULL = 112;

    public static bool IsDiskFull(Exception ex) => ex is IOException io && (OperatingSystem.IsWindows()
        ? (io.HResult & 0xFFFF) is ERROR_DISK_FULL or ERROR_HANDLE_DISK_FULL
        : io.HResult is ENOSPC or EDQUOT);

    public static bool IsReadOnly(Exception ex) => ex is IOException io && (OperatingSystem.IsWindows()
        ? (io.HResult & 0xFFFF) is ERROR_WRITE_PROTECT
        : io.HResult is EROFS);

    /// <summary>A BackupException with a stable id for a full or read-only file system; null for other faults.</summary>
    public static BackupException? Classify(Exception ex, string what) =>
        IsDiskFull(ex) ? new BackupException(BackupErrorKind.WriteError, "DiskFull",
            $"{what}: the file system is full ({ex.Message}). Free space there (or use another location) and run the command again.", null, ex)
        : IsReadOnly(ex) ? new BackupException(BackupErrorKind.WriteError, "ReadOnlyFileSystem",
            $"{what}: the file system is read-only ({ex.Message}). Listing, verifying and restoring from it work; writing needs it mounted read-write.", null, ex)
        : null;
}
