using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using BlockBackup.Engine.Compression;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Format;
using BlockBackup.Engine.ObjectStores;
using BlockBackup.Engine.Operations;
using Newtonsoft.Json.Linq;

namespace BlockBackup.Engine.Repository;

/// <summary>
/// A bucket (S3) or container (Swift) holding backups in the layout Cinder's s3 and swift drivers
/// write: <c>volume_&lt;vid&gt;/&lt;UTC ts&gt;/az_&lt;az&gt;_backup_&lt;bid&gt;</c> followed by <c>-00001</c>…,
/// <c>_sha256file</c> and <c>_metadata</c> (the commit point, stored last), and nothing else
/// under a backup's prefix (Cinder's restore aborts on an unlisted object there). BlockBackup's
/// own bookkeeping, volume locks and in-flight records, lives under <c>.blockbackup/</c>, a
/// name no backup prefix starts with. Everything is derived from the objects: no listing cache,
/// so whatever decides a deletion or a restore comes from the metadata itself.
/// </summary>
public sealed class ObjectStoreRepository : IChunkedRepository, IDisposable
{
    /// <summary>Cinder's backup_s3_object_size / backup_swift_object_size default (50 MiB).</summary>
    public const long CinderObjectSize = 52428800;

    /// <summary>Cinder's backup_s3_store_bucket / backup_swift_container default.</summary>
    public const string DefaultContainer = "volumebackups";

    private const string InternalDirectory = ".blockbackup/";

    private readonly string _keyPrefix;
    private readonly string _availabilityZone;

    /// <summary>The backups this instance is writing: their lock and the in-flight record's bytes (see <see cref="CommitFence"/>).</summary>
    private readonly ConcurrentDictionary<Guid, (IVolumeLock Lock, byte[] Record)> _writing = new();

    /// <summary>Backups that retracted their metadata at commit: a failure after that must not keep them for committed.</summary>
    private readonly ConcurrentDictionary<Guid, bool> _retracted = new();

    /// <param name="store">The bucket or container (names are relative to it).</param>
    /// <param name="kind"><see cref="RepositoryKind.S3"/> or <see cref="RepositoryKind.Swift"/>.</param>
    /// <param name="container">The bucket/container name, as Cinder's backup record keeps it.</param>
    /// <param name="keyPrefix">An optional key prefix inside it ("" or ending in '/').</param>
    /// <param name="availabilityZone">Cinder's storage_availability_zone in new prefixes (default nova).</param>
    public ObjectStoreRepository(IObjectStore store, RepositoryKind kind, string container, string keyPrefix = "", string? availabilityZone = null)
    {
        if (kind is not (RepositoryKind.S3 or RepositoryKind.Swift))
        {
            throw new ArgumentOutOfRangeException(nameof(kind), kind, "An object-store repository is S3 or Swift.");
        }

        if (keyPrefix.Length > 0 && (!keyPrefix.EndsWith('/') || ObjectStoreTarget.PrefixProblem(keyPrefix.TrimEnd('/')) is not null))
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidRepository",
                $"'{keyPrefix}' is not a valid key prefix: {ObjectStoreTarget.PrefixProblem(keyPrefix.TrimEnd('/')) ?? "it must end in '/'"}.", keyPrefix);
        }

        var zone = availabilityZone ?? "nova";
        if (zone.Length == 0 || zone.Any(c => c == '/' || char.IsControl(c)))
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidAvailabilityZone", $"'{zone}' is not a valid availability zone name for object names.", zone);
        }

        Store = store;
        Kind = kind;
        Container = container;
        _keyPrefix = keyPrefix;
        _availabilityZone = zone;
        var scheme = kind == RepositoryKind.S3 ? "s3" : "swift";
        Location = $"{scheme}://{container}{(keyPrefix.Length > 0 ? "/" + keyPrefix.TrimEnd('/') : string.Empty)}";
        BackupServices = [kind == RepositoryKind.S3 ? CinderBackupRecord.S3Service : CinderBackupRecord.SwiftService];
    }

    public string Location { get; }

    private readonly ListingWarnings _warnings = new();

    public IReadOnlyList<string> TakeWarnings() => _warnings.Take();

    public RepositoryKind Kind { get; }

    /// <summary>The bucket or container.</summary>
    public string Container { get; }

    public IObjectStore Store { get; }

    public TimeSpan LockTimeout { get; set; } = TimeSpan.FromSeconds(30);

    public long DefaultObjectSize => CinderObjectSize;

    public IReadOnlyList<string> BackupServices { get; }

    /// <summary>
    /// ObjectStoreContainerNotFound when the bucket or container does not exist: every verb but a
    /// backup (whose first put creates it) says so, rather than list a mistyped name as empty.
    /// </summary>
    public void RequireContainer(CancellationToken cancellationToken = default)
    {
        if (!Store.ContainerExistsAsync($"{_keyPrefix}{InternalDirectory}container-check", cancellationToken).GetAwaiter().GetResult())
        {
            throw new BackupException(BackupErrorKind.NotFound, "ObjectStoreContainerNotFound",
                $"The {(Kind == RepositoryKind.S3 ? "bucket" : "container")} of repository '{Location}' does not exist ({Store.Properties.Description}): check its name and the endpoint. " +
                "Nothing was changed; the first backup into the repository (New-VolumeBackup) creates it.", Location);
        }
    }

    /// <summary>Closes the store's connections (its HTTP client).</summary>
    public void Dispose() => (Store as IDisposable)?.Dispose();

    /// <summary>Metadata names in Cinder's object-store records are the full object names.</summary>
    public string ObjectKey(string container, string objectName) => objectName;

    public string DisplayName(string key) => $"{Location[..Location.IndexOf("://", StringComparison.Ordinal)]}://{Container}/{key}";

    public IReadOnlyList<BackupInfo> List(bool includeIncomplete = false, CancellationToken cancellationToken = default)
    {
        var groups = new SortedDictionary<string, Group>(StringComparer.Ordinal);
        var stray = new Dictionary<string, string>(StringComparer.Ordinal); // prefix -> why no backup has it
        foreach (var o in Enumerate(_keyPrefix + "volume_", cancellationToken))
        {
            var match = ObjectNaming.ObjectStoreNameRegex().Match(o.Name[_keyPrefix.Length..]);
            if (!match.Success)
            {
                continue; // not a backup's object (Cinder ignores it too)
            }

            var prefix = _keyPrefix + match.Groups["prefix"].Value;
            if (!groups.TryGetValue(prefix, out var group))
            {
                // A name the pattern admits but no backup can have (a bad id or date): skipped and
                // reported, never a failure of the whole listing (anyone who may write the bucket could plant one).
                if (stray.ContainsKey(prefix))
                {
                    continue;
                }

                if (!ObjectNaming.TryParseNamed(match, out var volumeId, out var backupId, out var started, out var problem))
                {
                    stray[prefix] = problem;
                    continue;
                }

                groups[prefix] = group = new Group(volumeId, backupId, started);
            }

            switch (match.Groups["suffix"].Value)
            {
                case ObjectNaming.MetadataSuffix:
                    group.MetadataSize = o.Size;
                    break;
                case ObjectNaming.Sha256FileSuffix:
                    break;
                default:
                    group.DataBytes += o.Size;
                    break;
            }
        }

        _warnings.Report(Location, stray.Select(p => (DisplayName(p.Key) + "*", p.Value)).ToList());
        var inflight = includeIncomplete ? InFlightRecords(cancellationToken) : [];
        var found = new List<BackupInfo>();
        var lockedVolumes = new Dictionary<Guid, bool>();
        bool IsLocked(Guid volumeId) => lockedVolumes.TryGetValue(volumeId, out var locked)
            ? locked
            : lockedVolumes[volumeId] = ObjectStoreLock.IsHeld(Store, LockPrefix(volumeId), cancellationToken);
        foreach (var (prefix, g) in groups)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (g.MetadataSize is { } size)
            {
                found.Add(FromMetadata(prefix, g, size));
            }
            else if (includeIncomplete)
            {
                // A record naming another place for this id does not make these objects ours.
                var ours = inflight.TryGetValue(g.BackupId, out var record) && (record.Prefix is null || record.Prefix == prefix);
                found.Add(Incomplete(prefix, g.VolumeId, g.BackupId, g.Started, IsLocked(g.VolumeId), ours));
            }
        }

        // Backups known only by their in-flight record (killed before their first object was
        // stored): incomplete, so that -Incomplete finds them too, or being created while locked.
        // A record naming a backup that has metadata is ignored: that backup committed, so the
        // record is stale or forged, and an incomplete twin with its id must never be listed
        // (retention would decide on the twin and a removal by id hit the real backup).
        var committed = groups.Values.Where(g => g.MetadataSize is not null).Select(g => g.BackupId).ToHashSet();
        foreach (var (backupId, record) in inflight)
        {
            if (record.Prefix is { } prefix && !groups.ContainsKey(prefix) && !committed.Contains(backupId))
            {
                found.Add(Incomplete(prefix, record.VolumeId, backupId, record.StartedUtc, IsLocked(record.VolumeId), ours: true));
            }
        }

        RepositoryListing.InheritVolumeSizes(found);
        return found
            .Where(b => includeIncomplete || b.Status == BackupStatus.Available)
            .OrderBy(b => b.CreatedUtc).ThenBy(b => b.Prefix, StringComparer.Ordinal)
            .ToList();
    }

    public BackupInfo Get(Guid backupId) => Get(backupId, List(includeIncomplete: true));

    private BackupInfo Get(Guid backupId, IReadOnlyList<BackupInfo> all) =>
        RepositoryListing.Available(backupId, all, Location, i => $"('{DisplayName(i.Prefix)}*')");

    public BackupInfo? FindLatest(Guid volumeId) =>
        List().Where(b => b.VolumeId == volumeId).MaxBy(b => (b.CreatedUtc, b.Prefix));

    public BackupChain GetChain(Guid backupId)
    {
        var all = List(includeIncomplete: true);
        Get(backupId, all); // a precise error when the backup itself is missing, damaged or incomplete
        return BackupGraph.Chain(all, backupId, Location);
    }

    public IReadOnlyList<BackupInfo> GetDependents(Guid backupId, bool recursive, IReadOnlyList<BackupInfo>? backups = null) =>
        BackupGraph.Dependents(backups ?? List(), backupId, recursive);

    public BackupMetadata ReadMetadata(BackupInfo backup)
    {
        var key = ObjectNaming.MetadataName(backup.Prefix);
        var info = Store.StatAsync(key).GetAwaiter().GetResult()
            ?? throw new BackupException(BackupErrorKind.NotFound, "MetadataNotFound", $"Backup metadata '{DisplayName(key)}' does not exist.", key);
        return MetadataSerializer.Read(Store.GetAsync(key).GetAwaiter().GetResult(), info.Size, DisplayName(key), backup.Prefix);
    }

    public VerificationResult Verify(Guid backupId, bool includeChain, IProgress<OperationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        return RepositoryListing.DamagedVerification(backupId, List(includeIncomplete: true, cancellationToken))
            ?? VerifyOperation.Run(this, backupId, includeChain, progress, cancellationToken);
    }

    public IReadOnlyList<BackupInfo> Remove(Guid backupId, bool includeDependents, CancellationToken cancellationToken = default) =>
        Remove(RepositoryListing.ById(backupId, List(includeIncomplete: true, cancellationToken), Location), includeDependents, cancellationToken);

    public IReadOnlyList<BackupInfo> Remove(BackupInfo backup, bool includeDependents, CancellationToken cancellationToken = default)
    {
        if (RepositoryListing.Same(backup, List(includeIncomplete: true, cancellationToken)) is { Status: BackupStatus.Creating })
        {
            throw new BackupException(BackupErrorKind.NotFound, "BackupNotFound", $"Backup {backup.Id} in repository '{Location}' is still being written.", backup.Id);
        }

        using var volumeLock = AcquireLock(backup.VolumeId, "delete", cancellationToken);
        var backups = List(includeIncomplete: true, cancellationToken);
        var target = RepositoryListing.Same(backup, backups);
        var order = RepositoryListing.RemovalOrder(target, RepositoryListing.DependentsOf(target, backups), includeDependents);
        RemovalGuard.RefuseWhileRead(Store, $"{_keyPrefix}{InternalDirectory}readers/volume-{ObjectNaming.FormatId(target.VolumeId)}/", target.Id, order, cancellationToken);
        foreach (var removed in order)
        {
            cancellationToken.ThrowIfCancellationRequested();
            DeleteObjects(removed.Prefix, removed.Id, cancellationToken);
        }

        return order;
    }

    /// <summary>Removes leftovers (the age of one BlockBackup did not write is the time in its prefix: when it started).</summary>
    public IReadOnlyList<BackupInfo> RemoveIncomplete(TimeSpan minimumAge, CancellationToken cancellationToken = default)
    {
        var removed = new List<BackupInfo>();
        var now = DateTime.UtcNow;
        foreach (var leftover in List(includeIncomplete: true, cancellationToken).Where(b => IncompleteBackups.MayRemove(b, minimumAge, now)))
        {
            cancellationToken.ThrowIfCancellationRequested();

            using var volumeLock = AcquireLock(leftover.VolumeId, "cleanup", cancellationToken);
            if (!RemoveLeftover(leftover, cancellationToken, out var record))
            {
                continue; // completed meanwhile
            }

            removed.Add(leftover with { Source = leftover.Source ?? StringOrNull(record?["source"]) });
        }

        return removed;
    }

    public ReadLease BeginRead(Guid volumeId, IReadOnlyCollection<Guid> backupIds, string operation, CancellationToken cancellationToken) =>
        ReadLease.Acquire(Store, $"{_keyPrefix}{InternalDirectory}readers/volume-{ObjectNaming.FormatId(volumeId)}/", operation, backupIds, cancellationToken);

    public IVolumeLock AcquireLock(Guid volumeId, string operation, CancellationToken cancellationToken, IProgress<OperationProgress>? progress = null) =>
        ObjectStoreLock.Acquire(Store, LockPrefix(volumeId), volumeId, operation, LockTimeout, DisplayName(LockPrefix(volumeId)), cancellationToken, progress);

    /// <summary>Names the backup and records it as in flight (outside every backup prefix) before any of its objects exists.</summary>
    public NewBackup BeginBackup(IVolumeLock volumeLock, Guid volumeId, Guid backupId, DateTime startedUtc, string? snapshotPath = null, string? rbdSource = null)
    {
        var prefix = ObjectNaming.ObjectStorePrefix(_keyPrefix, volumeId, startedUtc, _availabilityZone, backupId);
        var record = new JObject
        {
            ["backup_id"] = ObjectNaming.FormatId(backupId),
            ["volume_id"] = ObjectNaming.FormatId(volumeId),
            ["prefix"] = prefix,
            ["started"] = startedUtc.ToString("O", CultureInfo.InvariantCulture),
            ["host"] = Environment.MachineName,
            ["pid"] = Environment.ProcessId,
            ["snapshot"] = snapshotPath,
            ["source"] = rbdSource,
        };
        var bytes = Encoding.UTF8.GetBytes(record.ToString(Newtonsoft.Json.Formatting.None));
        Store.PutAsync(InFlightKey(backupId), new MemoryStream(bytes), bytes.Length, PutOptions.Default, CancellationToken.None).GetAwaiter().GetResult();
        _writing[backupId] = (volumeLock, bytes);
        return new NewBackup(backupId, volumeId, Container, prefix, startedUtc);
    }

    /// <summary>
    /// The committer's first check (<see cref="CommitFence"/>): its lock still held, its record not
    /// fenced, every object it wrote listed; before the hash list, so that a backup whose lease
    /// lapsed long ago stores nothing more.
    /// </summary>
    public void CheckBeforeCommit(NewBackup backup, ObjectList written, long storedBytes, CancellationToken cancellationToken)
    {
        if (!_writing.TryGetValue(backup.BackupId, out var writing))
        {
            return; // not begun by this instance: nothing to compare with
        }

        var problem = !writing.Lock.IsStillHeld ? "this process no longer holds the volume's lock"
            : !CommitFence.RecordIsOurs(Store, InFlightKey(backup.BackupId), writing.Record, cancellationToken) ? "its in-flight record was fenced by a cleanup"
            : CommitFence.CheckObjects(Store, backup.Prefix, written, storedBytes, cancellationToken);
        if (problem is not null)
        {
            throw CommitFence.LockLost(backup.VolumeId, backup.BackupId, Location, problem);
        }
    }

    public BackupInfo CompleteBackup(NewBackup backup, BackupMetadata metadata)
    {
        // The committer's second check, after its metadata put (see CommitFence for why this order).
        if (_writing.TryRemove(backup.BackupId, out var writing) && !RecordStillOurs(backup, writing.Record))
        {
            // Retracted: AbandonBackup (the caller's failure path) deletes it again should this fail.
            _retracted[backup.BackupId] = true;
            TryDelete(ObjectNaming.MetadataName(backup.Prefix));
            throw CommitFence.LockLost(backup.VolumeId, backup.BackupId, Location,
                "a cleanup fenced its in-flight record while it was storing its metadata, which was then deleted again");
        }

        TryDelete(InFlightKey(backup.BackupId));
        return ToInfo(backup.Prefix, metadata, metadata.Extra?.StoredBytes ?? 0) with { CreatedUtc = CinderTime.TryParseUtc(metadata.CreatedAt) ?? backup.StartedUtc };
    }

    /// <summary>Whether the record reads back as written; a record that cannot be read proves nothing, so it counts as fenced.</summary>
    private bool RecordStillOurs(NewBackup backup, byte[] written)
    {
        try
        {
            return CommitFence.RecordIsOurs(Store, InFlightKey(backup.BackupId), written, CancellationToken.None);
        }
        catch (Exception ex) when (ex is BackupException or IOException or HttpRequestException)
        {
            return false;
        }
    }

    public void AbandonBackup(NewBackup backup)
    {
        _writing.TryRemove(backup.BackupId, out _);
        try
        {
            // Metadata in place: the backup committed before the failure (its PUT may even have
            // been answered with an error after it landed), so it stays; unless the commit
            // retracted it (fenced), when that metadata may name objects a cleaner deleted.
            if (!_retracted.TryRemove(backup.BackupId, out _) && Store.StatAsync(ObjectNaming.MetadataName(backup.Prefix), CancellationToken.None).GetAwaiter().GetResult() is not null)
            {
                TryDelete(InFlightKey(backup.BackupId));
                return;
            }

            DeleteObjects(backup.Prefix, backup.BackupId, CancellationToken.None);
        }
        catch (Exception ex) when (ex is BackupException or IOException or HttpRequestException)
        {
            // Left as an incomplete backup with its in-flight record: the next backup of the volume removes it.
        }
    }

    public IReadOnlyList<BackupInfo> RemoveLeftoversOf(IVolumeLock volumeLock, Action<BackupInfo, Exception>? failed, CancellationToken cancellationToken)
    {
        if (!volumeLock.IsStillHeld)
        {
            throw new InvalidOperationException($"Removing leftovers of volume {volumeLock.VolumeId} needs that volume's lock in '{Location}', held by the caller.");
        }

        var removed = new List<BackupInfo>();
        // Only BlockBackup's own (an in-flight record names them): Cinder's are left to the explicit cleanup.
        foreach (var leftover in List(includeIncomplete: true, cancellationToken).Where(b => b.VolumeId == volumeLock.VolumeId && b.Status is BackupStatus.Incomplete or BackupStatus.Creating && b.WrittenBy == "BlockBackup"))
        {
            cancellationToken.ThrowIfCancellationRequested();
            try
            {
                if (RemoveLeftover(leftover, cancellationToken, out _))
                {
                    removed.Add(leftover);
                }
            }
            catch (Exception ex) when (ex is BackupException or IOException or HttpRequestException)
            {
                failed?.Invoke(leftover, ex);
            }
        }

        // In-flight records whose backup never stored an object (killed at the first step).
        foreach (var (backupId, record) in InFlightRecords(cancellationToken).Where(r => r.Value.VolumeId == volumeLock.VolumeId && removed.All(b => b.Id != r.Key)))
        {
            if (!Enumerate(_keyPrefix + "volume_" + ObjectNaming.FormatId(record.VolumeId) + "/", cancellationToken).Any(o => o.Name.Contains("_backup_" + ObjectNaming.FormatId(backupId), StringComparison.Ordinal)))
            {
                TryDelete(InFlightKey(backupId));
            }
        }

        return removed;
    }

    /// <summary>
    /// Removes a leftover under its volume's lock, fenced (<see cref="CommitFence"/>): false, and
    /// nothing deleted, when it committed meanwhile. Its metadata is deleted once more at the end,
    /// should a commit whose lease lapsed have put it while the objects went.
    /// </summary>
    private bool RemoveLeftover(BackupInfo leftover, CancellationToken cancellationToken, out JObject? record)
    {
        record = null;
        if (!CommitFence.FenceLeftover(Store, InFlightKey(leftover.Id), leftover.Prefix, cancellationToken))
        {
            return false;
        }

        record = DeleteObjects(leftover.Prefix, leftover.Id, cancellationToken);
        Store.DeleteAsync(ObjectNaming.MetadataName(leftover.Prefix), cancellationToken).GetAwaiter().GetResult();
        return true;
    }

    /// <summary>
    /// Metadata first (so an interrupted deletion leaves an incomplete backup, never a listed one
    /// with missing objects), then the rest of the prefix, then the in-flight record (after the
    /// clone it names); returns that record as it was, or null.
    /// </summary>
    private JObject? DeleteObjects(string prefix, Guid backupId, CancellationToken cancellationToken)
    {
        Store.DeleteAsync(ObjectNaming.MetadataName(prefix), cancellationToken).GetAwaiter().GetResult();
        // Only this backup's names: another backup's prefix could extend this one only by digits, never match these suffixes.
        bool IsOwn(string name) => name.StartsWith(prefix, StringComparison.Ordinal) && name[prefix.Length..] is var rest
            && (rest == ObjectNaming.Sha256FileSuffix || rest == ObjectNaming.MetadataSuffix || (rest.Length >= 6 && rest[0] == '-' && rest[1..].All(char.IsAsciiDigit)));
        foreach (var o in Enumerate(prefix, cancellationToken).ToList())
        {
            if (IsOwn(o.Name))
            {
                Store.DeleteAsync(o.Name, cancellationToken).GetAwaiter().GetResult();
            }
        }

        // A large hash list whose upload was killed before its manifest: segments nothing lists.
        Store.DeleteUnlistedAsync(prefix, IsOwn, cancellationToken).GetAwaiter().GetResult();

        // The clone beside the image that the record names, once no process holds it; the record goes right after.
        var record = ReadRecord(InFlightKey(backupId), 64 << 10, cancellationToken);
        if (StringOrNull(record?["snapshot"]) is { } clone)
        {
            Consistency.ConsistentView.RemoveRecordedClone(clone);
        }

        TryDelete(InFlightKey(backupId));
        return record;
    }

    /// <summary>An in-flight record's JSON, or null when there is none or an unreadable one (which then names nothing).</summary>
    private JObject? ReadRecord(string key, long maxLength, CancellationToken cancellationToken)
    {
        try
        {
            using var stream = Store.GetAsync(key, 0, maxLength, cancellationToken).GetAwaiter().GetResult();
            using var reader = new StreamReader(stream, Encoding.UTF8);
            return JObject.Parse(reader.ReadToEnd());
        }
        catch (Exception ex) when (ex is BackupException or Newtonsoft.Json.JsonException or IOException or HttpRequestException)
        {
            return null;
        }
    }

    private static string? StringOrNull(JToken? token) => token is { Type: JTokenType.String } ? (string?)token : null;

    private BackupInfo FromMetadata(string prefix, Group g, long metadataSize)
    {
        var key = ObjectNaming.MetadataName(prefix);
        try
        {
            var metadata = MetadataSerializer.Read(Store.GetAsync(key).GetAwaiter().GetResult(), metadataSize, DisplayName(key), prefix);
            return ToInfo(prefix, metadata, g.DataBytes) with { CreatedUtc = CinderTime.TryParseUtc(metadata.CreatedAt) ?? g.Started };
        }
        catch (BackupException ex) when (ex.ErrorId != "ObjectNotFound")
        {
            // Damaged metadata: listed (on request) with the reason, never restorable, never cleaned up silently.
            return Incomplete(prefix, g.VolumeId, g.BackupId, g.Started, locked: false, ours: false) with { Status = BackupStatus.Damaged, Problem = ex.Message };
        }
    }

    private BackupInfo ToInfo(string prefix, BackupMetadata metadata, long storedBytes)
    {
        var extra = metadata.Extra;
        var compressions = metadata.Objects.Select(o => CompressionNames.ToMetadataName(o.Compression)).Distinct().ToList();
        return new BackupInfo
        {
            Id = metadata.BackupId,
            VolumeId = metadata.VolumeId,
            Name = metadata.Name,
            Description = metadata.Description,
            CreatedUtc = DateTime.UnixEpoch,
            ParentId = metadata.ParentId,
            Status = BackupStatus.Available,
            VolumeSize = extra?.VolumeSize ?? (metadata.ParentId is null ? metadata.Objects.Select(o => o.End).DefaultIfEmpty(0).Max() : 0),
            StoredBytes = extra?.StoredBytes ?? storedBytes,
            ObjectCount = metadata.Objects.Count,
            Compression = extra?.Compression ?? (compressions.Count == 1 ? compressions[0] : compressions.Count == 0 ? "none" : "mixed"),
            Consistency = extra?.Consistency,
            Policy = extra?.Policy,
            Source = extra?.Source,
            WrittenBy = extra is null ? "Cinder" : "BlockBackup",
            Repository = Location,
            Container = Container,
            Prefix = prefix,
        };
    }

    private BackupInfo Incomplete(string prefix, Guid volumeId, Guid backupId, DateTime started, bool locked, bool ours) => new()
    {
        Id = backupId,
        VolumeId = volumeId,
        CreatedUtc = started,
        Status = locked ? BackupStatus.Creating : BackupStatus.Incomplete,
        WrittenBy = ours ? "BlockBackup" : "Cinder",
        Repository = Location,
        Container = Container,
        Prefix = prefix,
    };

    /// <summary>
    /// The in-flight records by backup id. Read as hostile input (others may write the bucket): a
    /// record's prefix is used only when it is exactly this backup's name in Cinder's layout, so
    /// nothing else can be listed or deleted in its name.
    /// </summary>
    private Dictionary<Guid, InFlight> InFlightRecords(CancellationToken cancellationToken)
    {
        var records = new Dictionary<Guid, InFlight>();
        foreach (var o in Enumerate(_keyPrefix + InternalDirectory + "inflight/", cancellationToken))
        {
            // Unreadable, gone meanwhile or not naming itself: it proves nothing, so it owns nothing.
            if (ReadRecord(o.Name, Math.Min(o.Size, 64 << 10), cancellationToken) is { } json
                && Guid.TryParse(StringOrNull(json["backup_id"]), out var backupId) && Guid.TryParse(StringOrNull(json["volume_id"]), out var volumeId)
                && o.Name == InFlightKey(backupId))
            {
                var prefix = StringOrNull(json["prefix"]) is { } named && IsPrefixOf(named, volumeId, backupId) ? named : null;
                // JObject.Parse reads an ISO time as a Date token, not a string.
                var started = json["started"] is JValue { Type: JTokenType.Date, Value: DateTime date } ? date.ToUniversalTime()
                    : DateTime.TryParse(StringOrNull(json["started"]), CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var t) ? t.ToUniversalTime() : DateTime.UtcNow;
                records[backupId] = new InFlight(volumeId, prefix, started);
            }
        }

        return records;
    }

    /// <summary>Whether <paramref name="prefix"/> is exactly the name Cinder's layout gives this backup in this repository.</summary>
    private bool IsPrefixOf(string prefix, Guid volumeId, Guid backupId)
    {
        if (!prefix.StartsWith(_keyPrefix, StringComparison.Ordinal))
        {
            return false;
        }

        var m = ObjectNaming.ObjectStoreNameRegex().Match(ObjectNaming.MetadataName(prefix)[_keyPrefix.Length..]);
        return m.Success && _keyPrefix + m.Groups["prefix"].Value == prefix
            && Guid.TryParse(m.Groups["vid"].Value, out var vid) && vid == volumeId && Guid.TryParse(m.Groups["bid"].Value, out var bid) && bid == backupId;
    }

    private sealed record InFlight(Guid VolumeId, string? Prefix, DateTime StartedUtc);

    private IEnumerable<ObjectInfo> Enumerate(string prefix, CancellationToken cancellationToken)
    {
        var enumerator = Store.ListAsync(prefix, cancellationToken).GetAsyncEnumerator(cancellationToken);
        try
        {
            while (enumerator.MoveNextAsync().AsTask().GetAwaiter().GetResult())
            {
                yield return enumerator.Current;
            }
        }
        finally
        {
            enumerator.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }

    private void TryDelete(string key)
    {
        try
        {
            Store.DeleteAsync(key).GetAwaiter().GetResult();
        }
        catch (Exception ex) when (ex is BackupException or IOException or HttpRequestException)
        {
            // Bookkeeping only; a stale record is removed with its volume's next leftovers.
        }
    }

    private string InFlightKey(Guid backupId) => $"{_keyPrefix}{InternalDirectory}inflight/{ObjectNaming.FormatId(backupId)}.json";

    private string LockPrefix(Guid volumeId) => $"{_keyPrefix}{InternalDirectory}locks/volume-{ObjectNaming.FormatId(volumeId)}/";

    private sealed class Group(Guid volumeId, Guid backupId, DateTime started)
    {
        public Guid VolumeId { get; } = volumeId;
        public Guid BackupId { get; } = backupId;
        public DateTime Started { get; } = started;
        public long? MetadataSize { get; set; }
        public long DataBytes { get; set; }
    }
}
