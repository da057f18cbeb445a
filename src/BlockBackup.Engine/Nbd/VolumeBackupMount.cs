using System.Diagnostics;
using BlockBackup.Engine.Repository;
using Newtonsoft.Json;

namespace BlockBackup.Engine.Nbd;

/// <summary>A running NBD export of a backup (Mount-VolumeBackup's result), as its state file records it.</summary>
public sealed class VolumeBackupMount
{
    public required string ExportName { get; init; }
    public required string Uri { get; init; }
    public required Guid BackupId { get; init; }
    public required string Repository { get; init; }
    public required long Size { get; init; }
    public required bool ReadOnly { get; init; }
    public required int ProcessId { get; init; }
    public required DateTime Started { get; init; }
    /// <summary>The Unix socket listened on (null when listening on TCP).</summary>
    public string? Socket { get; init; }
    /// <summary>The TCP address and port listened on (null on a Unix socket).</summary>
    public string? Address { get; init; }
    public int? Port { get; init; }
    /// <summary>Where writes are kept (a writable mount only).</summary>
    public string? OverlayPath { get; init; }
    /// <summary>What the server logged (I/O errors name the damaged object); the server's output when it runs in the background.</summary>
    public string? LogPath { get; init; }

    public override string ToString() => $"{ExportName} {Uri}";
}

/// <summary>
/// The state files of running mounts, one per export under the work directory's <c>mounts</c>
/// folder: how Get-VolumeBackupMount and Dismount-VolumeBackup find a server another pwsh
/// started, and how the next one notices a server that was killed (its process is gone) and
/// removes what it left: state, socket, overlay.
/// </summary>
public static class MountRegistry
{
    public static string Directory => Path.Combine(WorkDirectory.Path, "mounts");

    public static string StatePath(string exportName) => Path.Combine(Directory, exportName + ".json");

    public static string DefaultSocket(string exportName) => Path.Combine(Directory, exportName + ".sock");

    public static string DefaultOverlay(string exportName) => Path.Combine(Directory, exportName + ".overlay");

    public static string LogPath(string exportName) => Path.Combine(Directory, exportName + ".log");

    /// <summary>Records a mount (atomically: a reader sees the old state or the new, never half).</summary>
    public static void Write(VolumeBackupMount mount)
    {
        System.IO.Directory.CreateDirectory(Directory);
        var path = StatePath(mount.ExportName);
        var temp = path + "." + Environment.ProcessId + ".tmp";
        File.WriteAllText(temp, JsonConvert.SerializeObject(mount, Formatting.Indented));
        File.Move(temp, path, overwrite: true);
    }

    /// <summary>The mount of that export, if one is recorded (alive or not).</summary>
    public static VolumeBackupMount? Read(string exportName)
    {
        try
        {
            return JsonConvert.DeserializeObject<VolumeBackupMount>(File.ReadAllText(StatePath(exportName)));
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException or JsonException)
        {
            return null;
        }
    }

    /// <summary>
    /// The recorded mounts whose server still runs; those whose process is gone are cleaned up
    /// (returned in <paramref name="removed"/>).
    /// </summary>
    public static IReadOnlyList<VolumeBackupMount> Live(out IReadOnlyList<VolumeBackupMount> removed)
    {
        var live = new List<VolumeBackupMount>();
        var dead = new List<VolumeBackupMount>();
        if (System.IO.Directory.Exists(Directory))
        {
            foreach (var file in System.IO.Directory.EnumerateFiles(Directory, "*.json").Order(StringComparer.Ordinal))
            {
                if (Read(Path.GetFileNameWithoutExtension(file)) is not { } mount)
                {
                    continue;
                }

                if (IsRunning(mount))
                {
                    live.Add(mount);
                }
                else
                {
                    Clean(mount, keepOverlay: false);
                    dead.Add(mount);
                }
            }
        }

        removed = dead;
        return live;
    }

    /// <summary>Whether the mount's server process is the one running under its id (not a later process that reused it).</summary>
    public static bool IsRunning(VolumeBackupMount mount)
    {
        try
        {
            using var process = Process.GetProcessById(mount.ProcessId);
            // The server records its state after it started; a process started after that is another one.
            return !process.HasExited && process.StartTime.ToUniversalTime() <= mount.Started.ToUniversalTime().AddSeconds(1);
        }
        catch (Exception ex) when (ex is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            return false;
        }
    }

    /// <summary>
    /// Removes what a mount leaves: its state file, socket, and (unless kept) its overlay and the
    /// overlay's map. A state file is only as trustworthy as the work directory, so each path it
    /// names is removed only when it is what a mount leaves there: a socket that is a socket, an
    /// overlay (a regular file, not a link) in the mounts folder or with its map beside it, a log
    /// in the mounts folder.
    /// </summary>
    public static void Clean(VolumeBackupMount mount, bool keepOverlay)
    {
        if (mount.Socket is { } socket && Native.PosixFiles.Of(socket, followLink: false) is { IsSocket: true })
        {
            File.Delete(socket);
        }

        // An overlay elsewhere (-OverlayPath) has its map once the server flushed or stopped; a
        // killed server's overlay in the mounts folder may not have one yet.
        if (!keepOverlay && mount.OverlayPath is { } overlay
            && Native.PosixFiles.Of(overlay, followLink: false) is { IsRegularFile: true }
            && (overlay == DefaultOverlay(mount.ExportName) || Native.PosixFiles.Of(overlay + ".map", followLink: false) is { IsRegularFile: true }))
        {
            File.Delete(overlay);
            File.Delete(overlay + ".map");
        }

        // A log that recorded nothing says nothing; one that did (a damaged object) stays to be read.
        if (mount.LogPath is { } log && log == LogPath(mount.ExportName) && File.Exists(log) && new FileInfo(log).Length == 0)
        {
            File.Delete(log);
        }

        // Last: while the state file exists, the next Get-VolumeBackupMount still finds the rest.
        File.Delete(StatePath(mount.ExportName));
    }
}
