using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Native;
using Newtonsoft.Json.Linq;

namespace BlockBackup.Engine.Repository;

/// <summary>
/// An exclusive per-volume lock in the repository, safe on NFS: created with O_EXCL (atomic on
/// NFSv3+), carrying host, pid and process start time, refreshed by a heartbeat. A lock whose
/// process is gone (same host) or whose heartbeat stopped (other host) is stale and is taken
/// over by an atomic rename, so two recoverers cannot both win.
/// </summary>
public sealed class RepositoryLock : IVolumeLock
{
    public static TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(30);
    public static TimeSpan StaleAfter { get; set; } = TimeSpan.FromMinutes(5);

    private readonly string _path;
    private readonly string _token;
    private readonly Timer _heartbeat;
    private int _disposed;

    private RepositoryLock(string repositoryRoot, Guid volumeId, string path, string token)
    {
        RepositoryRoot = repositoryRoot;
        VolumeId = volumeId;
        _path = path;
        _token = token;
        _heartbeat = new Timer(_ => Touch(), null, HeartbeatInterval, HeartbeatInterval);
    }

    /// <summary>The repository and volume this lock is for: what its holder may treat as its own.</summary>
    public string RepositoryRoot { get; }
    public Guid VolumeId { get; }

    /// <summary>False once disposed (or when the lock was broken as stale and taken by another process).</summary>
    public bool IsStillHeld => Volatile.Read(ref _disposed) == 0 && IsOurs();

    private bool IsOurs() => IsHeldBy(_path, _token);

    public static string LockDirectory(string repositoryRoot) => Path.Combine(repositoryRoot, ".blockbackup", "locks");

    public static string LockPath(string repositoryRoot, Guid volumeId) =>
        Path.Combine(LockDirectory(repositoryRoot), $"volume-{volumeId:D}.lock");

    /// <summary>Takes the volume's lock, waiting up to <paramref name="timeout"/> for another holder; <paramref name="progress"/> is told, about once a second, who holds it meanwhile.</summary>
    public static RepositoryLock Acquire(string repositoryRoot, Guid volumeId, string operation, TimeSpan timeout, CancellationToken cancellationToken, IProgress<OperationProgress>? progress = null)
    {
        var path = LockPath(repositoryRoot, volumeId);
        AtomicFile.CreateDirectory(Path.GetDirectoryName(path)!);
        var token = Guid.NewGuid().ToString("N");
        var deadline = Stopwatch.StartNew();
        TimeSpan? lastReport = null;
        using var self = Process.GetCurrentProcess();
        var content = new JObject
        {
            ["host"] = Environment.MachineName,
            ["pid"] = Environment.ProcessId,
            ["process_start"] = self.StartTime.ToUniversalTime().ToString("O", CultureInfo.InvariantCulture),
            ["process_space"] = ProcessSpace.Current,
            ["operation"] = operation,
            ["acquired_at"] = DateTime.UtcNow.ToString("O", CultureInfo.InvariantCulture),
            ["token"] = token,
        }.ToString();

        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (TryCreate(path, content, token, $"Taking the lock of volume {volumeId} in '{repositoryRoot}'"))
            {
                RemoveDebris(path);
                return new RepositoryLock(repositoryRoot, volumeId, path, token);
            }

            if (File.Exists(path))
            {
                var holder = Describe(path, out var stale);
                if (stale)
                {
                    BreakStaleLock(path);
                    continue;
                }

                if (deadline.Elapsed >= timeout)
                {
                    throw new BackupException(BackupErrorKind.ResourceBusy, "RepositoryLocked",
                        $"Volume {volumeId} is locked in repository '{repositoryRoot}' by {holder}. Wait for that operation to finish; a lock whose process died is recovered automatically (on another host after {StaleAfter.TotalMinutes:0} minutes without heartbeat).",
                        path);
                }

                if (progress is not null && (lastReport is null || deadline.Elapsed - lastReport >= TimeSpan.FromSeconds(1)))
                {
                    lastReport = deadline.Elapsed;
                    progress.Report(new OperationProgress(OperationPhase.WaitingForLock, (long)deadline.Elapsed.TotalSeconds, (long)timeout.TotalSeconds,
                        $"Waiting for volume {volumeId}'s lock in '{repositoryRoot}', held by {holder}"));
                }

                Thread.Sleep(200);
            }
        }
    }

    /// <summary>
    /// Creates the lock file, or returns false when it exists. The lock appears complete or not at
    /// all: its content is written and flushed under a temporary name (held with a flock while it
    /// exists), then hard-linked to the lock's name; link(2) fails when the name exists, as
    /// atomically as O_EXCL, NFS included. So no one meets an empty or half-written lock of a
    /// writer that is alive (a kill between creating and filling a lock in place left one that
    /// cost the next backup a wait), and a writer killed midway leaves only its temporary, which
    /// the next holder removes. Where hard links are not supported, the lock is made in place.
    /// </summary>
    private static bool TryCreate(string path, string content, string token, string what)
    {
        if (!LinuxNative.IsLinux)
        {
            return TryCreateInPlace(path, content, what);
        }

        var temp = AtomicFile.TempName(path);
        FileStream? stream = null;
        try
        {
            stream = HeldFile.Create(temp, FileAccess.Write, AtomicFile.FileMode0660);
            var bytes = System.Text.Encoding.UTF8.GetBytes(content);
            stream.Write(bytes);
            AtomicFile.FlushToDisk(stream);
            if (LinuxNative.TryLink(temp, path, out var errno))
            {
                return true;
            }

            if (LinuxNative.IsAlreadyExists(errno))
            {
                // NFS may answer a retransmitted link that succeeded with EEXIST: then it is ours.
                return IsHeldBy(path, token);
            }

            if (LinuxNative.IsNotFound(errno))
            {
                // Our temporary is gone: the holder that just took the lock swept it as a killed
                // taker's debris in the instant between its creation and its flock. So the lock
                // is held; wait for it like any other holder.
                return false;
            }

            if (LinuxNative.IsLinkUnsupported(errno))
            {
                return TryCreateInPlace(path, content, what); // no hard links on this file system
            }

            throw new IOException($"Linking the lock '{path}' failed (errno {errno}).", errno);
        }
        catch (IOException ex) when (StorageFault.Classify(ex, what) is { } fault)
        {
            throw fault;
        }
        catch (IOException ex)
        {
            throw new BackupException(BackupErrorKind.WriteError, "LockWriteFailed", $"Writing the lock file '{path}' failed: {ex.Message}", path, ex);
        }
        finally
        {
            AtomicFile.TryDelete(temp); // while still locked: no one may take it for a leftover first
            stream?.Dispose();
        }
    }

    /// <summary>The lock made where it is named: O_EXCL, then filled (a kill in between leaves an empty lock, judged stale after seconds).</summary>
    private static bool TryCreateInPlace(string path, string content, string what)
    {
        FileStream stream;
        try
        {
            stream = AtomicFile.CreateNew(path, 1);
        }
        catch (IOException) when (File.Exists(path))
        {
            return false;
        }

        try
        {
            using var writer = new StreamWriter(stream);
            writer.Write(content);
            writer.Flush();
            AtomicFile.FlushToDisk(stream);
            return true;
        }
        catch (IOException ex)
        {
            // We created the file but could not fill it (a full disk): remove it, or it would
            // look like someone else's lock to the next backup, and say what happened.
            stream.Dispose();
            AtomicFile.TryDelete(path);
            throw StorageFault.Classify(ex, what)
                ?? new BackupException(BackupErrorKind.WriteError, "LockWriteFailed", $"Writing the lock file '{path}' failed: {ex.Message}", path, ex);
        }
        finally
        {
            stream.Dispose();
        }
    }

    /// <summary>
    /// What killed takers of this volume's lock left beside it: temporaries of <see cref="TryCreate"/>
    /// whose writer is gone (their flock is free) and stale locks set aside by
    /// <see cref="BreakStaleLock"/> but not yet deleted (nobody ever holds those).
    /// </summary>
    private static void RemoveDebris(string path)
    {
        var dir = Path.GetDirectoryName(path)!;
        var name = Regex.Escape(Path.GetFileName(path));
        HeldFile.RemoveAbandoned(dir, new Regex($"^\\.tmp-[0-9a-f]{{32}}-{name}$", RegexOptions.CultureInvariant), failed: null);
        var aside = new Regex($"^{name}\\.stale-[0-9a-f]{{32}}$", RegexOptions.CultureInvariant);
        foreach (var file in Directory.EnumerateFiles(dir).Where(f => aside.IsMatch(Path.GetFileName(f))))
        {
            AtomicFile.TryDelete(file);
        }
    }

    private static bool IsHeldBy(string path, string token)
    {
        try
        {
            return File.ReadAllText(path).Contains(token, StringComparison.Ordinal);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>True while a live process holds the volume's lock (a dead holder's lock does not count).</summary>
    public static bool IsHeld(string repositoryRoot, Guid volumeId)
    {
        var path = LockPath(repositoryRoot, volumeId);
        if (!File.Exists(path))
        {
            return false;
        }

        Describe(path, out var stale);
        return !stale;
    }

    /// <summary>Who holds the lock, and whether that holder is gone.</summary>
    private static string Describe(string path, out bool stale)
    {
        stale = false;
        try
        {
            var info = new FileInfo(path);
            var age = DateTime.UtcNow - info.LastWriteTimeUtc;
            var json = Format.JsonDocumentText.ParseObject(File.ReadAllText(path));
            var host = (string?)json["host"];
            var pid = (int?)json["pid"];
            var operation = (string?)json["operation"];
            var start = (string?)json["process_start"];
            // A PID is checked only where it means the same process (same host name, boot and PID
            // namespace); elsewhere only a stopped heartbeat makes the lock stale.
            // (Locks written before this field existed carry none: judged by host and PID as then.)
            var space = (string?)json["process_space"];
            if (host == Environment.MachineName && pid is not null && (space is null || space == ProcessSpace.Current))
            {
                stale = !IsAlive(pid.Value, start);
            }
            else
            {
                stale = age > StaleAfter;
            }

            return $"process {pid} on {host} ({operation}, since {(string?)json["acquired_at"]})";
        }
        catch (Exception ex) when (ex is IOException or Newtonsoft.Json.JsonException or FormatException or InvalidCastException or ArgumentException)
        {
            // Unreadable or half-written lock: stale once it is old enough that its writer must be gone.
            try
            {
                // Its writer fills it within milliseconds of creating it; seconds later, that writer is gone.
                stale = DateTime.UtcNow - File.GetLastWriteTimeUtc(path) > TimeSpan.FromSeconds(3);
            }
            catch (IOException)
            {
            }

            return "an unknown process (unreadable lock file)";
        }
    }

    private static bool IsAlive(int pid, string? startTime)
    {
        try
        {
            using var p = Process.GetProcessById(pid);
            if (p.HasExited)
            {
                return false;
            }

            // A recycled pid has another start time.
            return startTime is null
                || !DateTime.TryParse(startTime, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var recorded)
                || Math.Abs((p.StartTime.ToUniversalTime() - recorded.ToUniversalTime()).TotalSeconds) < 2;
        }
        catch (ArgumentException)
        {
            return false;
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    private static void BreakStaleLock(string path)
    {
        var aside = path + ".stale-" + Guid.NewGuid().ToString("N");
        try
        {
            File.Move(path, aside);
            File.Delete(aside);
        }
        catch (IOException)
        {
            // Another process recovered it first; just retry.
        }
    }

    private void Touch()
    {
        try
        {
            File.SetLastWriteTimeUtc(_path, DateTime.UtcNow);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _heartbeat.Dispose();
        try
        {
            // Only remove the lock if it is still ours (it may have been broken as stale).
            if (File.ReadAllText(_path).Contains(_token, StringComparison.Ordinal))
            {
                File.Delete(_path);
            }
        }
        catch (IOException)
        {
        }
    }
}
