using BlockBackup.Engine.Format;
using BlockBackup.Engine.Operations;

namespace BlockBackup.Engine.Repository;

/// <summary>
/// What every repository kind offers the cmdlets, whatever its layout underneath: a file/NFS
/// directory in Cinder's chunked format (<see cref="BackupRepository"/>) or a Ceph backup pool
/// in Cinder's Ceph layout (<see cref="Rbd.RbdBackupPool"/>). Opened through
/// <see cref="RepositoryFactory"/>, so cmdlets never branch on the kind to list, chain, verify,
/// remove or export; only backup and restore pair a source or target kind with a repository kind.
/// </summary>
public interface IBackupRepository
{
    /// <summary>How the repository is named in its backups' <see cref="BackupInfo.Repository"/>.</summary>
    string Location { get; }

    RepositoryKind Kind { get; }

    /// <summary>Every backup, oldest first; with <paramref name="includeIncomplete"/> also those being written or left incomplete.</summary>
    IReadOnlyList<BackupInfo> List(bool includeIncomplete = false, CancellationToken cancellationToken = default);

    /// <summary>One backup, whatever its status; BackupNotFound when there is none.</summary>
    BackupInfo Get(Guid backupId);

    /// <summary>The backups a restore of <paramref name="backupId"/> needs, full first.</summary>
    BackupChain GetChain(Guid backupId);

    /// <summary>Backups that depend on <paramref name="backupId"/> (recursively: children before grandchildren).</summary>
    IReadOnlyList<BackupInfo> GetDependents(Guid backupId, bool recursive, IReadOnlyList<BackupInfo>? backups = null);

    /// <summary>Deletes a backup (dependents first, newest first, when asked); returns what was deleted, in order.</summary>
    IReadOnlyList<BackupInfo> Remove(Guid backupId, bool includeDependents, CancellationToken cancellationToken = default);

    /// <summary>
    /// Deletes exactly the listed entry <paramref name="backup"/> (its id and its place: prefix and
    /// container), as a retention decision named it; never another entry carrying the same id.
    /// A Ceph pool names a backup by its id alone, so there it is the removal by id.
    /// </summary>
    IReadOnlyList<BackupInfo> Remove(BackupInfo backup, bool includeDependents, CancellationToken cancellationToken = default) =>
        Remove(backup.Id, includeDependents, cancellationToken);

    /// <summary>
    /// Warnings from the listings made since the last call (objects whose names look like a
    /// backup's but cannot be one, which the listing skipped), each text once per repository
    /// handle; the cmdlets write them as warnings.
    /// </summary>
    IReadOnlyList<string> TakeWarnings() => [];

    /// <summary>
    /// Deletes what interrupted backups left behind; returns it. A leftover BlockBackup provably
    /// owns (it recorded the backup before writing anything, and nobody holds the volume's lock)
    /// goes at once; any other (Cinder's, which takes no lock) only once older than
    /// <paramref name="minimumAge"/>, since it may be a backup being written right now.
    /// </summary>
    IReadOnlyList<BackupInfo> RemoveIncomplete(TimeSpan minimumAge, CancellationToken cancellationToken = default);

    /// <summary>Reads a backup's data (and its chain's) back and checks it as far as the format allows.</summary>
    VerificationResult Verify(Guid backupId, bool includeChain, IProgress<OperationProgress>? progress = null, CancellationToken cancellationToken = default);

    /// <summary>The Cinder backup services that can read this repository; the first is the default record.</summary>
    IReadOnlyList<string> BackupServices { get; }
}

/// <summary>The repository kinds; the kind decides the layout, never the cmdlet.</summary>
public enum RepositoryKind
{
    /// <summary>A directory (local, NFS, SMB) in Cinder's chunked posix/NFS format.</summary>
    File,
    /// <summary>A Ceph pool in Cinder's Ceph backup driver layout (rbd:&lt;pool&gt;).</summary>
    RbdPool,
    /// <summary>An S3 bucket in Cinder's s3 driver layout (s3://bucket[/prefix]).</summary>
    S3,
    /// <summary>A Swift container in Cinder's swift driver layout (swift://container[/prefix]).</summary>
    Swift,
}

/// <summary>Defaults shared by the repository kinds.</summary>
public static class IncompleteBackups
{
    /// <summary>How old a leftover BlockBackup did not write must be before cleanup removes it: longer than any backup runs.</summary>
    public static readonly TimeSpan DefaultMinimumAge = TimeSpan.FromDays(1);

    /// <summary>Whether cleanup may remove this incomplete backup now.</summary>
    public static bool MayRemove(BackupInfo leftover, TimeSpan minimumAge, DateTime utcNow) =>
        leftover.Status == BackupStatus.Incomplete && (leftover.WrittenBy == "BlockBackup" || utcNow - leftover.CreatedUtc >= minimumAge);
}

/// <summary>Operations every kind shares, written once over the interface.</summary>
public static class BackupRepositoryExtensions
{
    /// <summary>Cinder's backup-export record of a backup, for the given (or the repository's default) backup service.</summary>
    public static CinderBackupRecord ExportRecord(this IBackupRepository repository, Guid backupId, string? backupService = null)
    {
        var service = backupService ?? repository.BackupServices[0];
        if (!repository.BackupServices.Contains(service, StringComparer.Ordinal))
        {
            throw new Errors.BackupException(Errors.BackupErrorKind.InvalidArgument, "BackupServiceNotSupported",
                $"Cinder's {service} cannot read {repository.Kind} repository '{repository.Location}'; use -BackupService {string.Join(" or ", repository.BackupServices)}.", service);
        }

        return CinderBackupRecord.Export(repository.Get(backupId), service);
    }
}
