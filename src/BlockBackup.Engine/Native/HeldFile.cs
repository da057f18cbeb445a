using System.Text.RegularExpressions;

namespace BlockBackup.Engine.Native;

/// <summary>
/// Files an operation makes for itself next to other data (a reflink clone beside the user's
/// image, a lock's temporary) and holds an exclusive flock on for as long as it uses them. A kill
/// releases the lock with the process, so whoever meets such a file later tells a leftover (its
/// lock can be taken) from one in use without trusting PIDs, host names or clocks. Where flock is
/// not available (not Linux) a file counts as in use and is kept.
/// </summary>
internal static class HeldFile
{
    /// <summary>
    /// Creates <paramref name="path"/> (never replacing anything: a file or link already there
    /// fails with an IOException) with <paramref name="mode"/> (null: the process's default) and
    /// locks it; the lock lasts until the stream is disposed.
    /// </summary>
    public static FileStream Create(string path, FileAccess access, UnixFileMode? mode, int bufferSize = 0)
    {
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = access, Share = FileShare.None, BufferSize = bufferSize };
        if (!OperatingSystem.IsWindows() && mode is { } m)
        {
            options.UnixCreateMode = m;
        }

        var stream = new FileStream(path, options);
        // .NET's own advisory lock (FileShare.None) can be switched off by an environment
        // variable; the explicit one is what leftovers are judged by.
        if (LinuxNative.IsLinux && !LinuxNative.TryLockExclusive(stream.SafeFileHandle))
        {
            stream.Dispose();
            throw new IOException($"'{path}' was locked by another process as soon as it was created.");
        }

        return stream;
    }

    /// <summary>What <see cref="RemoveIfAbandoned"/> found.</summary>
    public enum Found
    {
        Removed,
        InUse,
        NotARegularFile,
        Gone,
    }

    /// <summary>
    /// Deletes <paramref name="path"/> when it is a regular file (a symbolic link is never
    /// followed, nor deleted) whose lock can be taken: the process that made it is gone. The
    /// lock is held while the name is unlinked; the file is checked to still be the one locked.
    /// </summary>
    public static Found RemoveIfAbandoned(string path)
    {
        if (!LinuxNative.IsLinux)
        {
            return File.Exists(path) ? Found.InUse : Found.Gone;
        }

        using var handle = LinuxNative.OpenNoFollow(path);
        if (handle is null)
        {
            return LinuxNative.DescribeNoFollow(path) is null ? Found.Gone : Found.NotARegularFile; // a link (ELOOP), or unreadable
        }

        if (LinuxNative.Describe(handle) is not { RegularFile: true } opened)
        {
            return Found.NotARegularFile;
        }

        if (!LinuxNative.TryLockExclusive(handle))
        {
            return Found.InUse;
        }

        // Still the file we locked under that name (not swapped meanwhile for something else).
        if (LinuxNative.DescribeNoFollow(path) is not { } named || named.Identity != opened.Identity)
        {
            return Found.Gone;
        }

        File.Delete(path);
        return Found.Removed;
    }

    /// <summary>
    /// Removes the abandoned files in <paramref name="directory"/> (not below it) whose whole name
    /// matches <paramref name="names"/>. Returns what was removed; a file that cannot be removed
    /// is reported through <paramref name="failed"/> and kept.
    /// </summary>
    public static List<string> RemoveAbandoned(string directory, Regex names, Action<string, Exception>? failed)
    {
        var removed = new List<string>();
        IEnumerable<string> candidates;
        try
        {
            var options = new EnumerationOptions { AttributesToSkip = 0, IgnoreInaccessible = true, RecurseSubdirectories = false };
            candidates = Directory.EnumerateFiles(directory, "*", options).Where(p => names.IsMatch(Path.GetFileName(p))).ToList();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return removed; // the directory is gone or unreadable: nothing of ours to find there
        }

        foreach (var path in candidates)
        {
            try
            {
                if (RemoveIfAbandoned(path) == Found.Removed)
                {
                    removed.Add(path);
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                failed?.Invoke(path, ex);
            }
        }

        return removed;
    }
}
