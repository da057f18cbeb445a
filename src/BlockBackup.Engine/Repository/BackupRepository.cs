using BlockBackup.Engine.Compression;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Format;
using BlockBackup.Engine.Operations;

namespace BlockBackup.Engine.Repository;

/// <summary>
/// A directory (local or an NFS mount) holding backups in Cinder's posix/NFS layout. It describes
/// itself: listing, the latest backup of a volume and chains all come from the files in it. The
/// pipelines reach its objects through <see cref="Store"/>, a <see cref="ObjectStores.PosixObjectStore"/>
/// at its root; listing walks the directories itself, with a per-container cache.
/// </summary>
public sealed class BackupRepository : IChunkedRepository
{
    /// <summary>BlockBackup's posix object size (Cinder's backup_file_size default is ~1.9 GB, too coarse for incrementals).</summary>
    public const long PosixObjectSize = Operations.BackupRequest.DefaultObjectSize;

    private const int MaxDepth = 8;

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, ((long Length, long Ticks) Stamp, BackupInfo Info)> _parsedMetadata = new(StringComparer.Ordinal);

    private BackupRepository(string root)
    {
        Root = root;
        Store = new ObjectStores.PosixObjectStore(root);
    }

    public string Root { get; }

    private readonly ListingWarnings _warnings = new();

    public IReadOnlyList<string> TakeWarnings() => _warnings.Take();

    public ObjectStores.IObjectStore Store { get; }

    public long DefaultObjectSize => PosixObjectSize;

    /// <summary>Objects live in their backup's container directory, named as the metadata says.</summary>
    public string ObjectKey(string container, string objectName) => container.Replace('\\', '/') + "/" + objectName;

    public string DisplayName(string key) => Path.Combine(Root, key.Replace('/', Path.DirectorySeparatorChar));

    public ReadLease BeginRead(Guid volumeId, IReadOnlyCollection<Guid> backupIds, string operation, CancellationToken cancellationToken)
    {
        var lease = ReadLease.Acquire(Store, ReadersPrefix(volumeId), operation, backupIds, cancellationToken);
        RemoveAbandonedLeaseTemporaries(volumeId);
        return lease;
    }

    /// <summary>What readers killed while writing their lease left in the volume's lease directory.</summary>
    private void RemoveAbandonedLeaseTemporaries(Guid volumeId)
    {
        try
        {
            ((ObjectStores.PosixObjectStore)Store).RemoveAbandonedTemporaries(ReadersPrefix(volumeId));
        }
        catch (BackupException)
        {
            // A linked lease directory is not ours to clean; the lease itself already refused it.
        }
    }

    internal static string ReadersPrefix(Guid volumeId) => $".blockbackup/readers/volume-{ObjectNaming.FormatId(volumeId)}/";

    public IVolumeLock AcquireLock(Guid volumeId, string operation, CancellationToken cancellationToken, IProgress<OperationProgress>? progress = null) =>
        RepositoryLock.Acquire(Root, volumeId, operation, LockTimeout, cancellationToken, progress);

    /// <summary>
    /// Records the backup as in flight (<see cref="InFlightRecord"/>, naming the clone it may
    /// make beside the image), then creates its container (Cinder's id[0:2]/id[2:4]/id) with a
    /// cache saying the backup is being written. The record comes first: a kill at any later
    /// step leaves something the next backup and Remove-VolumeBackup -Incomplete find.
    /// </summary>
    public NewBackup BeginBackup(IVolumeLock volumeLock, Guid volumeId, Guid backupId, DateTime startedUtc, string? snapshotPath = null, string? rbdSource = null)
    {
        var backup = new NewBackup(backupId, volumeId, ObjectNaming.DefaultContainer(backupId), ObjectNaming.Prefix(volumeId, startedUtc, backupId), startedUtc);
        var container = Path.Combine(Root, backup.Container);
        if (Path.Exists(container))
        {
            // Never written into (nor, on failure, cleaned up in) a directory this backup did not make.
            throw new BackupException(BackupErrorKind.InvalidOperation, "ContainerExists",
                $"The container '{container}' of new backup {backupId} exists already; BlockBackup writes a backup only into a directory it creates. Look at what is in it before removing it.", container);
        }

        var what = $"Starting backup {backupId} in '{Root}'";
        try
        {
            new InFlightRecord(backupId, volumeId, backup.Prefix, startedUtc, snapshotPath, rbdSource).Write(Root);
        }
        catch (IOException ex)
        {
            throw StorageFault.Classify(ex, what)
                ?? new BackupException(BackupErrorKind.WriteError, "BackupStartFailed", $"{what}: writing '{InFlightRecord.PathFor(Root, backupId)}' failed: {ex.Message}", Root, ex);
        }

        try
        {
            AtomicFile.CreateDirectory(container);
            new ContainerSummary { State = ContainerSummary.StateCreating, BackupId = backupId, VolumeId = volumeId, Prefix = backup.Prefix }.Write(container);
        }
        catch (Exception ex)
        {
            AbandonBackup(backup);
            if (ex is IOException io)
            {
                throw StorageFault.Classify(io, what)
                    ?? new BackupException(BackupErrorKind.WriteError, "BackupStartFailed", $"{what}: creating '{container}' failed: {io.Message}", container, io);
            }

            throw;
        }

        return backup;
    }

    /// <summary>The metadata is in place: the backup is no longer in flight; refresh the listing cache (only a cache: the backup exists without it).</summary>
    public BackupInfo CompleteBackup(NewBackup backup, BackupMetadata metadata)
    {
        var container = Path.Combine(Root, backup.Container);
        var metadataPath = Path.Combine(container, ObjectNaming.MetadataName(backup.Prefix));
        AtomicFile.TryDelete(InFlightRecord.PathFor(Root, backup.BackupId));
        var info = ToInfo(container, backup.Prefix, metadata, metadataPath);
        var file = new FileInfo(metadataPath);
        try
        {
            new ContainerSummary
            {
                State = ContainerSummary.StateAvailable, BackupId = backup.BackupId, VolumeId = backup.VolumeId, Prefix = backup.Prefix,
                MetadataLength = file.Length, MetadataMtimeTicks = file.LastWriteTimeUtc.Ticks, Info = info,
            }.Write(container);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // The backup is complete; a missing cache only makes the next listing read the metadata.
        }

        return info;
    }

    /// <summary>
    /// Removes what a failed backup wrote, and nothing else: only names with its own prefix,
    /// temporaries and its own cache in its own container, and never when its metadata is in
    /// place (then it committed before the failure, and exists). Best effort: what stays is an
    /// incomplete backup with its in-flight record, which cleanup removes.
    /// </summary>
    public void AbandonBackup(NewBackup backup)
    {
        var container = Path.Combine(Root, backup.Container);
        try
        {
            if (!File.Exists(Path.Combine(container, ObjectNaming.MetadataName(backup.Prefix))))
            {
                DeleteBackupFiles(container, backup.Prefix, backup.BackupId);
            }

            RemoveRecord(backup.BackupId);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or BackupException)
        {
            // Left as an incomplete backup; RemoveIncomplete (or the next backup) deletes it later.
        }
    }

    IReadOnlyList<BackupInfo> IChunkedRepository.RemoveLeftoversOf(IVolumeLock volumeLock, Action<BackupInfo, Exception>? failed, CancellationToken cancellationToken) =>
        RemoveLeftoversOf((RepositoryLock)volumeLock, failed, cancellationToken);

    /// <summary>
    /// Deletes a backup's in-flight record, after the clone it names beside the image (when that
    /// is a clone no process holds any more): the record goes last, so a kill here loses nothing.
    /// </summary>
    private void RemoveRecord(Guid backupId)
    {
        if (InFlightRecord.TryRead(Root, backupId) is { Snapshot: { } clone })
        {
            Consistency.ConsistentView.RemoveRecordedClone(clone);
        }

        InFlightRecord.Delete(Root, backupId);
    }

    /// <summary>How long to wait for another operation on the same volume before failing.</summary>
    public TimeSpan LockTimeout { get; set; } = TimeSpan.FromSeconds(30);

    public static BackupRepository Open(string path, bool create)
    {
        var root = Path.GetFullPath(path);
        if (!Directory.Exists(root))
        {
            if (File.Exists(root))
            {
                throw new BackupException(BackupErrorKind.InvalidArgument, "RepositoryIsFile", $"The repository path '{root}' is a file; a repository is a directory.", root);
            }

            if (!create)
            {
                throw new BackupException(BackupErrorKind.NotFound, "RepositoryNotFound", $"The repository '{root}' does not exist. Create a backup into it first, or check the path (an NFS share must be mounted).", root);
            }

            AtomicFile.CreateDirectory(root);
        }

        return new BackupRepository(root);
    }

    string IBackupRepository.Location => Root;

    public RepositoryKind Kind => RepositoryKind.File;

    public IReadOnlyList<string> BackupServices { get; } = [Format.CinderBackupRecord.PosixService, Format.CinderBackupRecord.NfsService];

    /// <summary>
    /// Verifies a backup; a damaged one (metadata that fails validation) is an invalid result
    /// naming its problem, not an error, so verifying a whole repository reports it with the rest.
    /// </summary>
    public VerificationResult Verify(Guid backupId, bool includeChain, IProgress<OperationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        return RepositoryListing.DamagedVerification(backupId, List(includeIncomplete: true, cancellationToken))
            ?? VerifyOperation.Run(this, backupId, includeChain, progress, cancellationToken);
    }

    public string ContainerPath(BackupInfo backup) => Path.Combine(Root, backup.Container);

    internal string MetadataPath(BackupInfo backup) => Path.Combine(ContainerPath(backup), ObjectNaming.MetadataName(backup.Prefix));

    internal string Sha256FilePath(BackupInfo backup) => Path.Combine(ContainerPath(backup), ObjectNaming.Sha256FileName(backup.Prefix));

    public BackupMetadata ReadMetadata(BackupInfo backup) => MetadataSerializer.Read(MetadataPath(backup), backup.Prefix);

    /// <summary>Every backup in the repository, oldest first; incomplete ones only on request.</summary>
    public IReadOnlyList<BackupInfo> List(bool includeIncomplete = false, CancellationToken cancellationToken = default)
    {
        var found = new List<BackupInfo>();
        var stray = new List<(string Name, string Problem)>();
        Scan(Root, 0, found, stray, cancellationToken);
        _warnings.Report(Root, stray);
        AddRecordedOnly(found);

        RepositoryListing.InheritVolumeSizes(found);
        return found
            .Where(b => includeIncomplete || b.Status == BackupStatus.Available)
            .OrderBy(b => b.CreatedUtc).ThenBy(b => b.Prefix, StringComparer.Ordinal)
            .ToList();
    }

    public BackupInfo Get(Guid backupId) => Get(backupId, List(includeIncomplete: true));

    private BackupInfo Get(Guid backupId, IReadOnlyList<BackupInfo> all) =>
        RepositoryListing.Available(backupId, all, Root, i => $"in '{i.Container}'");

    /// <summary>The newest available backup of a volume (Cinder's rule for choosing a parent).</summary>
    public BackupInfo? FindLatest(Guid volumeId) =>
        List().Where(b => b.VolumeId == volumeId).MaxBy(b => (b.CreatedUtc, b.Prefix));

    /// <summary>The chain of a backup, full backup first.</summary>
    public BackupChain GetChain(Guid backupId)
    {
        var all = List(includeIncomplete: true);
        Get(backupId, all); // a precise error when the backup itself is missing, damaged or incomplete
        return GetChain(backupId, all);
    }

    public BackupChain GetChain(Guid backupId, IReadOnlyList<BackupInfo> backups) => BackupGraph.Chain(backups, backupId, Root);

    /// <summary>Backups whose parent is <paramref name="backupId"/>, and theirs when recursive (children before grandchildren).</summary>
    public IReadOnlyList<BackupInfo> GetDependents(Guid backupId, bool recursive, IReadOnlyList<BackupInfo>? backups = null) =>
        BackupGraph.Dependents(backups ?? List(), backupId, recursive);

    /// <summary>
    /// Deletes a backup, refusing while incrementals depend on it unless
    /// <paramref name="includeDependents"/>; then dependents go first, newest first.
    /// Returns what was deleted, in order.
    /// </summary>
    public IReadOnlyList<BackupInfo> Remove(Guid backupId, bool includeDependents, CancellationToken cancellationToken = default) =>
        Remove(RepositoryListing.ById(backupId, List(includeIncomplete: true, cancellationToken), Root), includeDependents, cancellationToken);

    /// <summary>
    /// Deletes exactly the listed entry <paramref name="backup"/> (id, container and prefix: a
    /// copied or planted container may carry another backup's id) and, when asked, its dependents.
    /// </summary>
    public IReadOnlyList<BackupInfo> Remove(BackupInfo backup, bool includeDependents, CancellationToken cancellationToken = default)
    {
        // Damaged and incomplete backups can be removed too; only a backup being written cannot.
        // What decides a deletion (ids, volumes, parent links) comes from the metadata, never from
        // the listing cache: one wrong parent in a cache must not let a parent go before its child.
        var target = Authoritative(RepositoryListing.Same(backup, List(includeIncomplete: true, cancellationToken)));
        if (target.Status == BackupStatus.Creating)
        {
            throw new BackupException(BackupErrorKind.NotFound, "BackupNotFound", $"Backup {backup.Id} in repository '{Root}' is still being written.", backup.Id);
        }

        using var volumeLock = RepositoryLock.Acquire(Root, target.VolumeId, "delete", LockTimeout, cancellationToken);
        var backups = List(includeIncomplete: true, cancellationToken).Select(Authoritative).ToList();
        target = RepositoryListing.Same(backup, backups);
        var order = RepositoryListing.RemovalOrder(target, RepositoryListing.DependentsOf(target, backups), includeDependents);
        RemoveAbandonedLeaseTemporaries(target.VolumeId);
        RemovalGuard.RefuseWhileRead(Store, ReadersPrefix(target.VolumeId), target.Id, order, cancellationToken);
        foreach (var removed in order)
        {
            cancellationToken.ThrowIfCancellationRequested();
            DeleteFiles(removed);
        }

        return order;
    }

    /// <summary>
    /// The backup as its metadata describes it. A listing-cache entry that disagrees with the
    /// metadata is dropped (the next listing rebuilds it from the metadata).
    /// </summary>
    private BackupInfo Authoritative(BackupInfo listed)
    {
        if (listed.Status != BackupStatus.Available)
        {
            return listed;
        }

        var dir = ContainerPath(listed);
        var path = MetadataPath(listed);
        BackupInfo fromMetadata;
        try
        {
            // Parsed once per repository object while the metadata file is unchanged (retention
            // removes many backups in a row); what the cache file on disk says is never used here.
            var file = new FileInfo(path);
            var stamp = (file.Exists ? file.Length : -1, file.Exists ? file.LastWriteTimeUtc.Ticks : -1);
            if (!_parsedMetadata.TryGetValue(path, out var known) || known.Stamp != stamp)
            {
                known = (stamp, ToInfo(dir, listed.Prefix, MetadataSerializer.Read(path, listed.Prefix), path));
                _parsedMetadata[path] = known;
            }

            fromMetadata = known.Info;
        }
        catch (BackupException ex)
        {
            return listed with { Status = BackupStatus.Damaged, Problem = ex.Message };
        }

        if (fromMetadata.Id != listed.Id || fromMetadata.VolumeId != listed.VolumeId || fromMetadata.ParentId != listed.ParentId)
        {
            AtomicFile.TryDelete(Path.Combine(dir, ContainerSummary.FileName));
        }

        return fromMetadata with { VolumeSize = listed.VolumeSize == 0 ? fromMetadata.VolumeSize : listed.VolumeSize };
    }

    /// <summary>Removes backups left incomplete by a crash, kill or failed delete. Returns what was removed.</summary>
    public IReadOnlyList<BackupInfo> RemoveIncomplete(TimeSpan minimumAge, CancellationToken cancellationToken = default)
    {
        var removed = new List<BackupInfo>();
        var now = DateTime.UtcNow;
        // The age of a leftover is its container's last change: Cinder writing into it keeps it young.
        foreach (var leftover in List(includeIncomplete: true, cancellationToken).Where(b => IncompleteBackups.MayRemove(b, minimumAge, now)))
        {
            cancellationToken.ThrowIfCancellationRequested();
            using var volumeLock = RepositoryLock.Acquire(Root, leftover.VolumeId, "cleanup", LockTimeout, cancellationToken);
            if (File.Exists(MetadataPath(leftover)))
            {
                continue; // completed meanwhile
            }

            var record = DeleteFiles(leftover);
            removed.Add(leftover with { Source = leftover.Source ?? record?.Source });
        }

        RemoveSettledRecords(volumeId: null, cancellationToken);
        return removed;
    }

    /// <summary>
    /// In-flight records that outlived their backup's commit (a kill between the metadata and the
    /// record's deletion): the backup exists, so only the record (and an abandoned clone it names)
    /// goes, under the volume's lock (or, with <paramref name="volumeId"/>, for the volume whose
    /// lock the caller holds). Also the temporaries of records whose writer was killed.
    /// </summary>
    private void RemoveSettledRecords(Guid? volumeId, CancellationToken cancellationToken)
    {
        InFlightRecord.RemoveAbandonedTemporaries(Root);
        foreach (var id in InFlightRecord.All(Root))
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (InFlightRecord.TryRead(Root, id) is not { } record || (volumeId is not null && record.VolumeId != volumeId)
                || !File.Exists(Path.Combine(Root, ObjectNaming.DefaultContainer(id), ObjectNaming.MetadataName(record.Prefix))))
            {
                continue;
            }

            using var volumeLock = volumeId is null ? RepositoryLock.Acquire(Root, record.VolumeId, "cleanup", LockTimeout, cancellationToken) : null;
            RemoveRecord(id);
        }
    }

    /// <summary>
    /// Removes what interrupted BlockBackup backups of one volume left behind (objects, temporary
    /// files, hash list, but no metadata), for a backup of that volume that holds its lock, so that
    /// killed backups do not pile up until someone runs the explicit cleanup. Holding the lock is
    /// what makes this safe: every BlockBackup process that writes or deletes a backup of the
    /// volume in this repository holds it for the whole time, so a container of this volume
    /// without metadata cannot be one being written right now. Cinder does not take this lock, so
    /// containers Cinder wrote (no <see cref="ContainerSummary"/> naming the backup) are left to
    /// the explicit cleanup; Available and Damaged backups (metadata present) are never touched.
    /// Returns what was removed; a leftover that cannot be removed is reported through
    /// <paramref name="failed"/> and kept, never failing the caller.
    /// </summary>
    internal IReadOnlyList<BackupInfo> RemoveLeftoversOf(RepositoryLock volumeLock, Action<BackupInfo, Exception>? failed, CancellationToken cancellationToken)
    {
        if (volumeLock.RepositoryRoot != Root || !volumeLock.IsStillHeld)
        {
            throw new InvalidOperationException($"Removing leftovers of volume {volumeLock.VolumeId} needs that volume's lock in '{Root}', held by the caller.");
        }

        var removed = new List<BackupInfo>();
        // While we hold the lock, listing reports this volume's leftovers as Creating (a lock is held).
        foreach (var leftover in List(includeIncomplete: true).Where(b => b.VolumeId == volumeLock.VolumeId && b.Status is BackupStatus.Incomplete or BackupStatus.Creating))
        {
            cancellationToken.ThrowIfCancellationRequested();
            // Ours when its cache or its in-flight record says so (a kill before the cache left only the record).
            var summary = ContainerSummary.TryRead(ContainerPath(leftover));
            var record = InFlightRecord.TryRead(Root, leftover.Id);
            var ours = (summary is not null && summary.BackupId == leftover.Id && summary.VolumeId == leftover.VolumeId && summary.Prefix == leftover.Prefix)
                || (record is not null && record.VolumeId == leftover.VolumeId && record.Prefix == leftover.Prefix);
            if (!ours || File.Exists(MetadataPath(leftover)))
            {
                continue;
            }

            try
            {
                DeleteFiles(leftover);
                removed.Add(leftover);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                failed?.Invoke(leftover, ex);
            }
        }

        RemoveSettledRecords(volumeLock.VolumeId, cancellationToken);
        return removed;
    }

    /// <summary>
    /// Removes exactly one backup's files: metadata first (so a crash midway leaves an
    /// incomplete backup, never a listed one with missing objects), then everything with its
    /// prefix, then its in-flight record, if any (after the clone that names). Returns the record
    /// as it was before the removal (null when there was none).
    /// </summary>
    internal InFlightRecord? DeleteFiles(BackupInfo backup)
    {
        var container = ContainerPath(backup);
        RefuseLinks(container);
        var record = InFlightRecord.TryRead(Root, backup.Id);
        if (record is null && InFlightRecord.IsValid(backup.Id, backup.VolumeId, backup.Prefix))
        {
            // A removal is in flight too: killed after its last file but before its directories
            // were gone, it would leave empty directories that nothing lists; its record lists
            // them as an incomplete backup, which a rerun (or cleanup) finishes.
            new InFlightRecord(backup.Id, backup.VolumeId, backup.Prefix, backup.CreatedUtc, null).Write(Root);
        }

        DeleteBackupFiles(container, backup.Prefix, backup.Id);
        RemoveRecord(backup.Id);
        return record;
    }

    private void RefuseLinks(string container)
    {
        for (var dir = container; dir.Length > Root.Length; dir = Path.GetDirectoryName(dir)!)
        {
            if (Path.Exists(dir) && IsSymbolicLink(dir))
            {
                throw new BackupException(BackupErrorKind.InvalidData, "ContainerIsSymbolicLink",
                    $"'{dir}' is a symbolic link; BlockBackup never deletes through links in a repository. Remove the link by hand if it is not wanted.", dir);
            }
        }
    }

    private void DeleteBackupFiles(string container, string prefix, Guid backupId)
    {
        RefuseLinks(container);
        if (Directory.Exists(container))
        {
            File.Delete(Path.Combine(container, ObjectNaming.MetadataName(prefix)));
            File.Delete(Path.Combine(container, ObjectNaming.Sha256FileName(prefix)));
            foreach (var file in Directory.EnumerateFiles(container))
            {
                var name = Path.GetFileName(file);
                if (name.StartsWith(prefix, StringComparison.Ordinal) || name.StartsWith(".tmp-", StringComparison.Ordinal))
                {
                    File.Delete(file);
                }
            }

            var summary = ContainerSummary.TryRead(container);
            if (summary?.BackupId == backupId)
            {
                File.Delete(Path.Combine(container, ContainerSummary.FileName));
            }
        }

        // The container and the empty fan-out directories above it go, never the root; a kill
        // may have left only the fan-out directories, so a missing level is passed over.
        for (var dir = container; dir.Length > Root.Length; dir = Path.GetDirectoryName(dir)!)
        {
            if (Directory.Exists(dir))
            {
                if (Directory.EnumerateFileSystemEntries(dir).Any())
                {
                    break;
                }

                Directory.Delete(dir);
            }
        }
    }

    private void Scan(string dir, int depth, List<BackupInfo> found, List<(string Name, string Problem)> stray, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var summary = ContainerSummary.TryRead(dir);
        if (summary is not null && FromSummary(dir, summary) is { } fast)
        {
            found.Add(fast);
            return; // BlockBackup containers hold one backup and no subdirectories
        }

        IEnumerable<string> entries;
        try
        {
            entries = Directory.EnumerateFileSystemEntries(dir).ToList();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return;
        }

        var metadataPrefixes = new HashSet<string>(StringComparer.Ordinal);
        var objectPrefixes = new Dictionary<string, (Guid Volume, Guid Backup)>(StringComparer.Ordinal);
        var subdirs = new List<string>();
        foreach (var entry in entries)
        {
            var name = Path.GetFileName(entry);
            if (name.StartsWith('.'))
            {
                continue;
            }

            // Never through a symbolic link: on a share others can write, a link would make listing,
            // cleanup and deletion act outside the repository (and a link loop would list backups many
            // times). A linked container is reported as damaged, not followed; linked files are ignored.
            if (IsSymbolicLink(entry))
            {
                if (Directory.Exists(entry) && Guid.TryParse(name, out var linkedId))
                {
                    found.Add(new BackupInfo
                    {
                        Id = linkedId, VolumeId = Guid.Empty, CreatedUtc = DateTime.UnixEpoch, Status = BackupStatus.Damaged,
                        WrittenBy = "unknown", Repository = Root, Container = Relative(entry), Prefix = string.Empty,
                        Problem = $"The container '{Relative(entry)}' is a symbolic link; BlockBackup never follows links in a repository. Replace it with the directory itself.",
                    });
                }

                continue;
            }

            if (Directory.Exists(entry))
            {
                subdirs.Add(entry);
                continue;
            }

            var metadataMatch = ObjectNaming.MetadataFileRegex().Match(name);
            var match = metadataMatch.Success ? metadataMatch : ObjectNaming.MetadataFileRegex().Match(StripObjectSuffix(name) + ObjectNaming.MetadataSuffix);
            if (!match.Success)
            {
                continue;
            }

            // A name the pattern admits but no backup can have (a bad id or date): skipped and reported.
            if (!ObjectNaming.TryParseNamed(match, out var volumeId, out var backupId, out _, out var problem))
            {
                stray.Add((entry, problem));
            }
            else if (metadataMatch.Success)
            {
                metadataPrefixes.Add(match.Groups["prefix"].Value);
            }
            else
            {
                objectPrefixes[match.Groups["prefix"].Value] = (volumeId, backupId);
            }
        }

        foreach (var prefix in metadataPrefixes)
        {
            found.Add(FromMetadata(dir, prefix, summary));
        }

        foreach (var (prefix, ids) in objectPrefixes.Where(p => !metadataPrefixes.Contains(p.Key)))
        {
            found.Add(Incomplete(dir, prefix, ids.Volume, ids.Backup));
        }

        if (summary is not null && metadataPrefixes.Count == 0 && !objectPrefixes.ContainsKey(summary.Prefix))
        {
            found.Add(Incomplete(dir, summary.Prefix, summary.VolumeId, summary.BackupId));
        }

        if (depth < MaxDepth)
        {
            foreach (var sub in subdirs)
            {
                Scan(sub, depth + 1, found, stray, cancellationToken);
            }
        }
    }

    private static bool IsSymbolicLink(string path)
    {
        try
        {
            return File.GetAttributes(path).HasFlag(FileAttributes.ReparsePoint);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return true; // unreadable: treat like a link, i.e. do not go there
        }
    }

    private static string StripObjectSuffix(string name)
    {
        if (name.EndsWith(ObjectNaming.Sha256FileSuffix, StringComparison.Ordinal))
        {
            return name[..^ObjectNaming.Sha256FileSuffix.Length];
        }

        var dash = name.LastIndexOf('-');
        return dash > 0 && name.Length - dash >= 6 && name[(dash + 1)..].All(char.IsAsciiDigit) ? name[..dash] : name;
    }

    private BackupInfo? FromSummary(string dir, ContainerSummary summary)
    {
        if (summary.State != ContainerSummary.StateAvailable || summary.Info is null)
        {
            return null;
        }

        var metadata = new FileInfo(Path.Combine(dir, ObjectNaming.MetadataName(summary.Prefix)));
        if (!metadata.Exists || metadata.Length != summary.MetadataLength || metadata.LastWriteTimeUtc.Ticks != summary.MetadataMtimeTicks)
        {
            return null; // stale or damaged cache: fall back to the metadata itself
        }

        return summary.Info with { Repository = Root, Container = Relative(dir) };
    }

    private BackupInfo FromMetadata(string dir, string prefix, ContainerSummary? summary)
    {
        var path = Path.Combine(dir, ObjectNaming.MetadataName(prefix));
        BackupMetadata metadata;
        try
        {
            metadata = MetadataSerializer.Read(path, prefix);
        }
        catch (BackupException ex)
        {
            // Damaged metadata: listed (on request) with the reason, never restorable, never cleaned up silently.
            var m = ObjectNaming.MetadataFileRegex().Match(ObjectNaming.MetadataName(prefix));
            return Incomplete(dir, prefix, Guid.Parse(m.Groups["vid"].Value), Guid.Parse(m.Groups["bid"].Value)) with
            {
                Status = BackupStatus.Damaged,
                Problem = ex.Message,
            };
        }

        var info = ToInfo(dir, prefix, metadata, path);
        if (summary is not null && summary.BackupId == metadata.BackupId)
        {
            // Our own container whose cache was stale or still said "creating": refresh it.
            var file = new FileInfo(path);
            try
            {
                new ContainerSummary
                {
                    State = ContainerSummary.StateAvailable, BackupId = info.Id, VolumeId = info.VolumeId, Prefix = prefix,
                    MetadataLength = file.Length, MetadataMtimeTicks = file.LastWriteTimeUtc.Ticks, Info = info,
                }.Write(dir);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // A read-only repository still lists, just without the cache.
            }
        }

        return info;
    }

    internal BackupInfo ToInfo(string dir, string prefix, BackupMetadata metadata, string metadataPath)
    {
        var extra = metadata.Extra;
        var compressions = metadata.Objects.Select(o => CompressionNames.ToMetadataName(o.Compression)).Distinct().ToList();
        return new BackupInfo
        {
            Id = metadata.BackupId,
            VolumeId = metadata.VolumeId,
            Name = metadata.Name,
            Description = metadata.Description,
            CreatedUtc = CinderTime.TryParseUtc(metadata.CreatedAt) ?? File.GetLastWriteTimeUtc(metadataPath),
            ParentId = metadata.ParentId,
            Status = BackupStatus.Available,
            VolumeSize = extra?.VolumeSize ?? (metadata.ParentId is null ? metadata.Objects.Select(o => o.End).DefaultIfEmpty(0).Max() : 0),
            StoredBytes = extra?.StoredBytes ?? metadata.Objects.Sum(o => SizeOf(Path.Combine(dir, o.Name))),
            ObjectCount = metadata.Objects.Count,
            Compression = extra?.Compression ?? (compressions.Count == 1 ? compressions[0] : compressions.Count == 0 ? "none" : "mixed"),
            Consistency = extra?.Consistency,
            Policy = extra?.Policy,
            Source = extra?.Source,
            WrittenBy = extra is null ? "Cinder" : "BlockBackup",
            Repository = Root,
            Container = Relative(dir),
            Prefix = prefix,
        };
    }

    private BackupInfo Incomplete(string dir, string prefix, Guid volumeId, Guid backupId)
    {
        var locked = RepositoryLockIsHeld(volumeId);
        return new BackupInfo
        {
            Id = backupId,
            VolumeId = volumeId,
            CreatedUtc = Directory.GetLastWriteTimeUtc(dir),
            Status = locked ? BackupStatus.Creating : BackupStatus.Incomplete,
            WrittenBy = File.Exists(Path.Combine(dir, ContainerSummary.FileName)) ? "BlockBackup" : "Cinder",
            Repository = Root,
            Container = Relative(dir),
            Prefix = prefix,
        };
    }

    /// <summary>
    /// Backups known only by their in-flight record (killed before their container held anything
    /// that lists): incomplete, so that cleanup finds them, or being created while locked.
    /// </summary>
    private void AddRecordedOnly(List<BackupInfo> found)
    {
        foreach (var id in InFlightRecord.All(Root).Where(id => found.All(b => b.Id != id)))
        {
            if (InFlightRecord.TryRead(Root, id) is not { } record)
            {
                continue;
            }

            found.Add(new BackupInfo
            {
                Id = id,
                VolumeId = record.VolumeId,
                CreatedUtc = record.StartedUtc,
                Status = RepositoryLockIsHeld(record.VolumeId) ? BackupStatus.Creating : BackupStatus.Incomplete,
                WrittenBy = "BlockBackup",
                Repository = Root,
                Container = ObjectNaming.DefaultContainer(id),
                Prefix = record.Prefix,
            });
        }
    }

    private bool RepositoryLockIsHeld(Guid volumeId) => RepositoryLock.IsHeld(Root, volumeId);

    private string Relative(string dir) => Path.GetRelativePath(Root, dir);

    private static long SizeOf(string path)
    {
        var f = new FileInfo(path);
        return f.Exists ? f.Length : 0;
    }
}
