using System.Globalization;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Native;
using BlockBackup.Engine.Repository;

namespace BlockBackup.Engine.Configuration;

/// <summary>
/// The files of the node's configuration directory (registrations, secrets, policies, run
/// history), trusted as ssh trusts ~/.ssh: whoever can change them decides where backups go, what
/// is backed up with this user's rights and who receives the stored keys. So on Linux and macOS
/// every existing directory from / down to the configuration directory must be owned by root or
/// this user and not writable by group or others (an ancestor may be world-writable when it has
/// the sticky bit, as /tmp does: then nobody else can rename what is in it); the configuration
/// directory and its folders must not be symbolic links; and each file is opened with O_NOFOLLOW
/// and judged by fstat of the opened handle (owner root or this user, a regular file, not writable
/// by group or others), never by a check of the path before it is read. Anything else is refused
/// (ConfigurationNotTrusted) naming the path, what is wrong and the command that fixes it.
/// Directories are created 0700 and files written 0600, whatever the umask. On Windows the POSIX
/// checks do not apply (ownership and ACLs are not checked there; %ProgramData% is writable by
/// administrators only by default).
/// </summary>
public static class ConfigurationFiles
{
    public const string NotTrustedId = "ConfigurationNotTrusted";

    private const UnixFileMode DirectoryMode0700 = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    private const UnixFileMode FileMode0600 = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    private const UnixFileMode GroupOrOtherWrite = UnixFileMode.GroupWrite | UnixFileMode.OtherWrite;

    private static bool Posix => !OperatingSystem.IsWindows();

    /// <summary>
    /// Refuses an untrusted configuration directory, or folder <paramref name="subdirectory"/> of
    /// it (see the class); what does not exist yet is not refused (nothing can be read from it).
    /// </summary>
    internal static void CheckDirectory(string configurationDirectory, string? subdirectory = null)
    {
        if (!Posix)
        {
            return;
        }

        var directory = Path.GetFullPath(configurationDirectory);
        foreach (var ancestor in Ancestors(directory))
        {
            if (PosixFiles.Of(ancestor, followLink: true) is { } status)
            {
                Judge(ancestor, status, stickyAllowed: true);
            }
        }

        if (PosixFiles.Of(directory, followLink: true) is not { } own)
        {
            return;
        }

        Judge(directory, own, stickyAllowed: false);
        if (subdirectory is not null)
        {
            var sub = Path.Combine(directory, subdirectory);
            if (PosixFiles.Of(sub, followLink: false) is { } status)
            {
                Judge(sub, status, stickyAllowed: false);
            }
        }
    }

    /// <summary>Creates the configuration directory and its folder <paramref name="subdirectory"/> (0700) after checking what exists of them.</summary>
    internal static string CreateDirectory(string configurationDirectory, string subdirectory)
    {
        CheckDirectory(configurationDirectory, subdirectory);
        var directory = Path.GetFullPath(configurationDirectory);
        var path = Path.Combine(directory, subdirectory);
        if (OperatingSystem.IsWindows())
        {
            System.IO.Directory.CreateDirectory(path);
            return path;
        }

        // One level at a time: .NET gives the mode to the last directory only, and the umask takes bits away, never adds them.
        var missing = new Stack<string>();
        for (var d = path; !System.IO.Directory.Exists(d); d = Path.GetDirectoryName(d)!)
        {
            missing.Push(d);
        }

        while (missing.TryPop(out var d))
        {
            System.IO.Directory.CreateDirectory(d, DirectoryMode0700);
        }

        return path;
    }

    /// <summary>
    /// Opens a file of the configuration directory for reading after checking its directory; the
    /// opened file itself must be a regular file (not a symbolic link) owned by root or this user
    /// that group and others cannot write. Null when there is no such file.
    /// </summary>
    /// <param name="configurationDirectory">The configuration directory.</param>
    /// <param name="path">The file, in a folder of <paramref name="configurationDirectory"/>.</param>
    /// <param name="mode">Its permission bits, for checks of its own (a secret must not be readable by others); 0 on Windows.</param>
    internal static FileStream? OpenRead(string configurationDirectory, string path, out UnixFileMode mode)
    {
        mode = 0;
        if (!Posix)
        {
            // Windows: no ownership or ACL check (see the class), but a link is still never followed.
            var info = new FileInfo(path);
            return !info.Exists ? null
                : info.LinkTarget is not null ? throw NotTrusted(path, "it is a symbolic link; a configuration file must be the file itself", "replace it with the file it points to, or remove it")
                : new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        }

        var folder = Path.GetRelativePath(Path.GetFullPath(configurationDirectory), Path.GetDirectoryName(Path.GetFullPath(path))!);
        CheckDirectory(configurationDirectory, folder == "." ? null : folder);
        var handle = PosixFiles.OpenReadNoFollow(path, out var isLink);
        if (handle is null)
        {
            return isLink ? throw NotTrusted(path, "it is a symbolic link (to '" + LinkTarget(path) + "'); a configuration file must be the file itself", $"replace it with the file it points to (cp --remove-destination \"$(readlink -f '{path}')\" '{path}'), or remove it") : null;
        }

        try
        {
            var status = PosixFiles.Of(handle, path);
            if (!status.IsRegularFile)
            {
                throw NotTrusted(path, "it is not a regular file", "remove it");
            }

            Judge(path, status, stickyAllowed: false);
            mode = status.Permissions;
            return new FileStream(handle, FileAccess.Read);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Replaces <paramref name="path"/> atomically: a new temporary (0600, or made by
    /// <paramref name="create"/>), flushed, renamed over it, the directory synced.
    /// </summary>
    internal static void Write(string path, byte[] content, Func<string, FileStream>? create = null)
    {
        var temp = AtomicFile.TempName(path);
        try
        {
            using (var stream = (create ?? CreateNew)(temp))
            {
                stream.Write(content);
                AtomicFile.FlushToDisk(stream);
            }

            File.Move(temp, path, overwrite: true);
        }
        catch
        {
            AtomicFile.TryDelete(temp);
            throw;
        }

        AtomicFile.SyncDirectory(Path.GetDirectoryName(path)!);
    }

    private static FileStream CreateNew(string path)
    {
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = FileMode0600;
        }

        return new FileStream(path, options);
    }

    /// <summary>Every directory above <paramref name="directory"/>, as written and with every symbolic link resolved (realpath), each once.</summary>
    private static IEnumerable<string> Ancestors(string directory)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        static IEnumerable<string> Above(string path)
        {
            for (var parent = Path.GetDirectoryName(path); parent is not null; parent = Path.GetDirectoryName(parent))
            {
                yield return parent;
            }
        }

        // The nearest part of the path that exists, resolved: a symbolic link on the way is judged by where it leads.
        var existing = directory;
        while (!System.IO.Directory.Exists(existing) && Path.GetDirectoryName(existing) is { } up)
        {
            existing = up;
        }

        // The directory itself is judged by its caller; an existing ancestor's resolved path is an ancestor too.
        var real = PosixFiles.RealPath(existing);
        var resolved = real is null ? [] : existing == directory ? Above(real) : Above(real).Prepend(real);
        foreach (var path in Above(directory).Concat(resolved))
        {
            if (seen.Add(path))
            {
                yield return path;
            }
        }
    }

    private static void Judge(string path, PosixFileStatus status, bool stickyAllowed)
    {
        if (status.IsSymbolicLink)
        {
            throw NotTrusted(path, $"it is a symbolic link (to '{LinkTarget(path)}'); a folder of the configuration directory must be the directory itself", $"replace it with the directory it points to, or remove it");
        }

        var me = PosixFiles.EffectiveUid;
        if (status.Uid != 0 && status.Uid != me)
        {
            throw NotTrusted(path, $"it is owned by uid {status.Uid}, neither this user (uid {me}) nor root, so that user can change it",
                $"chown {me} '{path}' if its content is yours (check it first), or remove it, or use a configuration directory only you can change (BLOCKBACKUP_CONFIG_DIR)");
        }

        var writable = status.Permissions & GroupOrOtherWrite;
        if (writable != 0 && !(stickyAllowed && status.IsDirectory && status.Permissions.HasFlag(UnixFileMode.StickyBit)))
        {
            var who = writable == GroupOrOtherWrite ? "group and others" : writable == UnixFileMode.GroupWrite ? "its group" : "others";
            throw NotTrusted(path, $"{who} can write it (mode {Convert.ToString((int)status.Permissions, 8).PadLeft(4, '0')})",
                $"chmod go-w '{path}' (check what it holds first: another user could have changed it)");
        }
    }

    private static string LinkTarget(string path)
    {
        try
        {
            return new FileInfo(path).LinkTarget ?? "?";
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return "?";
        }
    }

    private static BackupException NotTrusted(string path, string what, string fix) =>
        new(BackupErrorKind.InvalidOperation, NotTrustedId,
            string.Create(CultureInfo.InvariantCulture, $"The configuration is not trusted: '{path}': {what}. Another user could change BlockBackup's repositories, policies or secrets through it, so it is not used. Fix: {fix}."),
            path);
}
