using BlockBackup.Engine.Native;

namespace BlockBackup.Engine.Repository;

/// <summary>
/// Write-to-temporary, flush, rename: readers see the old file or the complete new one, never a
/// torn one, on local filesystems and NFS alike (rename is atomic within a directory).
/// </summary>
internal static class AtomicFile
{
    public const UnixFileMode FileMode0660 = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite;
    public const UnixFileMode DirMode0770 = FileMode0660 | UnixFileMode.UserExecute | UnixFileMode.GroupExecute;

    /// <summary>A unique hidden name beside the final one; it never starts with an object prefix, so Cinder ignores it.</summary>
    public static string TempName(string finalPath)
    {
        var name = $".tmp-{Guid.NewGuid():N}-{Path.GetFileName(finalPath)}";
        return Path.Combine(Path.GetDirectoryName(finalPath)!, name.Length > 250 ? name[..250] : name);
    }

    /// <summary>
    /// Creates a file (0660: repositories are shared by a group) held with a lock while it is
    /// written: a temporary whose lock is free was left by a killed writer (see <see cref="HeldFile"/>).
    /// </summary>
    public static FileStream CreateNew(string path, int bufferSize = 1 << 16) =>
        HeldFile.Create(path, FileAccess.Write, FileMode0660, bufferSize);

    /// <summary>Writes through <paramref name="write"/> to a temporary name, fsyncs, renames over <paramref name="finalPath"/>.</summary>
    public static T Write<T>(string finalPath, Func<Stream, T> write)
    {
        var temp = TempName(finalPath);
        try
        {
            T result;
            using (var stream = CreateNew(temp))
            {
                result = write(stream);
                FlushToDisk(stream);
            }

            File.Move(temp, finalPath, overwrite: true);
            return result;
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    /// <summary>The stream's buffer, then the file's data durable, failing when the file system says it could not (see <see cref="LinuxNative.FlushToDisk"/>).</summary>
    public static void FlushToDisk(FileStream stream)
    {
        if (LinuxNative.IsLinux)
        {
            stream.Flush();
            LinuxNative.FlushToDisk(stream.SafeFileHandle, stream.Name);
        }
        else
        {
            stream.Flush(flushToDisk: true);
        }
    }

    public static void CreateDirectory(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(path);
            return;
        }

        Directory.CreateDirectory(path, DirMode0770);
    }

    /// <summary>Makes renames in a directory durable (Linux; elsewhere files are flushed one by one).</summary>
    public static void SyncDirectory(string directory) => LinuxNative.TrySyncDirectory(directory);

    public static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }
    }
}
