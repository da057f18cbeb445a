using BlockBackup.Engine.Format;
using BlockBackup.Engine.ObjectStores;

namespace BlockBackup.Engine.Repository;

/// <summary>
/// A repository in Cinder's chunked format (a file/NFS directory or an S3/Swift bucket): what the
/// backup, restore and verify pipelines need, written once over <see cref="Store"/>, as Cinder's
/// chunkeddriver is written once over its store methods. The layouts differ only in where a
/// backup's objects live (<see cref="ObjectKey"/>), how a new backup is named
/// (<see cref="BeginBackup"/>) and how volumes are locked; the format itself is shared.
/// </summary>
public interface IChunkedRepository : IBackupRepository
{
    /// <summary>Where the objects are; every name the pipelines use is relative to it.</summary>
    IObjectStore Store { get; }

    /// <summary>How long to wait for another operation on the same volume before failing.</summary>
    TimeSpan LockTimeout { get; set; }

    /// <summary>The store name of an object of the backup in <paramref name="container"/> (a name from its metadata, or a side file).</summary>
    string ObjectKey(string container, string objectName);

    /// <summary>How an object is named in messages (a path for a directory, the URL for a bucket).</summary>
    string DisplayName(string key);

    /// <summary>Locks a volume in this repository for a backup or a deletion (one writer per volume).</summary>
    IVolumeLock AcquireLock(Guid volumeId, string operation, CancellationToken cancellationToken, IProgress<OperationProgress>? progress = null);

    /// <summary>
    /// Claims backups for reading (a restore, a verification): removal refuses them while the
    /// claim lives, rather than deleting objects under a running restore.
    /// </summary>
    ReadLease BeginRead(Guid volumeId, IReadOnlyCollection<Guid> backupIds, string operation, CancellationToken cancellationToken);

    /// <summary>The newest available backup of a volume (Cinder's rule for choosing a parent).</summary>
    BackupInfo? FindLatest(Guid volumeId);

    /// <summary>A backup's metadata, read and validated.</summary>
    BackupMetadata ReadMetadata(BackupInfo backup);

    /// <summary>
    /// Reserves the names of a new backup and records it as being written before any object
    /// exists (so that even a kill at the first step leaves something cleanup finds), with
    /// <paramref name="snapshotPath"/>, the temporary copy it may make outside the repository
    /// (a reflink clone beside the image), which cleanup then removes too once no one holds it,
    /// and <paramref name="rbdSource"/>, the RBD image (<c>rbd:pool/image</c>) it snapshots: a
    /// leftover's <see cref="BackupInfo.Source"/>, so that cleanup can look for the snapshot there.
    /// </summary>
    NewBackup BeginBackup(IVolumeLock volumeLock, Guid volumeId, Guid backupId, DateTime startedUtc, string? snapshotPath = null, string? rbdSource = null);

    /// <summary>
    /// Right before the hash list and the metadata are stored: throws (VolumeLockLost) when the
    /// backup may no longer commit because another process may have taken its volume over. A
    /// file repository's lock cannot lapse under a running holder, so by default nothing is checked.
    /// </summary>
    void CheckBeforeCommit(NewBackup backup, ObjectList written, long storedBytes, CancellationToken cancellationToken)
    {
    }

    /// <summary>After the metadata was stored (the commit point): the new backup as listed.</summary>
    BackupInfo CompleteBackup(NewBackup backup, BackupMetadata metadata);

    /// <summary>
    /// Removes what a failed backup wrote (best effort: what stays is found by cleanup), and
    /// never a backup whose metadata is in place: that one committed before the failure.
    /// </summary>
    void AbandonBackup(NewBackup backup);

    /// <summary>
    /// Removes what interrupted BlockBackup backups of the locked volume left behind; a leftover
    /// that cannot be removed is reported through <paramref name="failed"/> and kept.
    /// </summary>
    IReadOnlyList<BackupInfo> RemoveLeftoversOf(IVolumeLock volumeLock, Action<BackupInfo, Exception>? failed, CancellationToken cancellationToken);

    /// <summary>
    /// Cinder's default object size for this kind of repository (posix: BlockBackup's 8 MiB;
    /// s3/swift: the drivers' 50 MiB), used when a backup does not choose one.
    /// </summary>
    long DefaultObjectSize { get; }
}

/// <summary>A held per-volume lock; disposing releases it.</summary>
public interface IVolumeLock : IDisposable
{
    Guid VolumeId { get; }

    /// <summary>False once released or taken over (a stale lock broken by another host).</summary>
    bool IsStillHeld { get; }
}

/// <summary>The names of a backup being written.</summary>
/// <param name="BackupId">The new backup's id.</param>
/// <param name="VolumeId">The volume it is a backup of.</param>
/// <param name="Container">Its container as Cinder records it (posix: the directory; s3/swift: the bucket).</param>
/// <param name="Prefix">The object prefix (Cinder's service_metadata).</param>
/// <param name="StartedUtc">When it started: in its prefix and its created_at.</param>
public sealed record NewBackup(Guid BackupId, Guid VolumeId, string Container, string Prefix, DateTime StartedUtc);

/// <summary>Where operations keep local scratch files (hash-list spills): never inside a repository.</summary>
public static class WorkDirectory
{
    /// <summary>
    /// <c>BLOCKBACKUP_WORK_DIR</c>, else the user's cache directory (<c>$XDG_CACHE_HOME</c> or
    /// <c>~/.cache</c> on Unix, <c>%LOCALAPPDATA%</c> on Windows) under <c>blockbackup/work</c>:
    /// a local disk rather than a tmpfs, since a 4 TiB volume's hash list spills 4 GiB.
    /// </summary>
    public static string Path
    {
        get
        {
            if (Environment.GetEnvironmentVariable("BLOCKBACKUP_WORK_DIR") is { Length: > 0 } explicitDir)
            {
                return System.IO.Path.GetFullPath(explicitDir);
            }

            var cache = OperatingSystem.IsWindows()
                ? Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData)
                : Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } xdg ? xdg
                : System.IO.Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
            if (string.IsNullOrEmpty(cache))
            {
                cache = System.IO.Path.GetTempPath();
            }

            return System.IO.Path.Combine(cache, "blockbackup", "work");
        }
    }
}
