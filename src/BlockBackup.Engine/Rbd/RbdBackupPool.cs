using System.Globalization;
using System.Text.RegularExpressions;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Volumes;
using Newtonsoft.Json;
using Newtonsoft.Json.Linq;

namespace BlockBackup.Engine.Rbd;

/// <summary>
/// A Ceph backup pool laid out as Cinder's Ceph backup driver does: one base image
/// <c>volume-&lt;vid&gt;.backup.&lt;bid&gt;</c> per full backup (legacy <c>.backup.base</c> too),
/// and per backup one snapshot <c>backup.&lt;bid&gt;.snap.&lt;epoch&gt;</c> on its base. The pool
/// describes itself: BlockBackup's fields (name, parent, source, time) are kept in the base
/// image's metadata (<c>rbd image-meta</c>, key <c>blockbackup.&lt;bid&gt;</c>); backups Cinder
/// made are listed from their names alone (within a base, each snapshot's parent is the one before).
/// </summary>
public sealed partial class RbdBackupPool : Repository.IBackupRepository
{
    public const string RepositoryPrefix = "rbd:";
    private const string MetaPrefix = "blockbackup.";

    public RbdBackupPool(RbdClient client, string pool, string? ns = null)
    {
        Client = client;
        Pool = RbdNames.Validate(pool, "pool");
        Namespace = ns is null ? null : RbdNames.Validate(ns, "namespace");
    }

    public RbdClient Client { get; }
    public string Pool { get; }
    public string? Namespace { get; }

    /// <summary>The repository string this pool is known by ("rbd:backups").</summary>
    public string Repository => RepositoryPrefix + (Namespace is null ? Pool : $"{Pool}/{Namespace}");

    string Repository.IBackupRepository.Location => Repository;

    public Repository.RepositoryKind Kind => Engine.Repository.RepositoryKind.RbdPool;

    public IReadOnlyList<string> BackupServices { get; } = [Format.CinderBackupRecord.CephService];

    // A pool backup exists once its snapshot does; before, only the in-flight mark on a new base
    // image says an interrupted full backup left it (RbdInFlight).
    IReadOnlyList<BackupInfo> Repository.IBackupRepository.List(bool includeIncomplete, CancellationToken cancellationToken) => List(includeIncomplete: includeIncomplete);

    IReadOnlyList<BackupInfo> Repository.IBackupRepository.RemoveIncomplete(TimeSpan minimumAge, CancellationToken cancellationToken) => RemoveIncomplete(minimumAge);

    /// <summary>
    /// Removes what interrupted backups left (of one volume, or all) whose holder is gone or that
    /// are older than <paramref name="minimumAge"/>: the snapshot each took of its source, then a
    /// full backup's new base image or an incremental's mark; returns what was removed.
    /// </summary>
    public IReadOnlyList<BackupInfo> RemoveIncomplete(TimeSpan minimumAge, Guid? onlyVolume = null)
    {
        var removed = new List<BackupInfo>();
        var now = DateTime.UtcNow;
        foreach (var leftover in List(onlyVolume, includeIncomplete: true).Where(b => b.Status == BackupStatus.Incomplete))
        {
            var baseImage = Image(leftover.Container);
            // Read again just before: the backup may have finished (or been cleaned) meanwhile.
            var meta = Client.ImageMetadata(baseImage);
            var full = meta.TryGetValue(RbdInFlight.Key, out var json) && RbdInFlight.Parse(json)?.BackupId == leftover.Id;
            var key = full ? RbdInFlight.Key : RbdInFlight.IncrementalKey(leftover.Id);
            var mark = meta.TryGetValue(key, out json) ? RbdInFlight.Parse(json) : null;
            var snapshots = Client.Snapshots(baseImage);
            if (mark is null || mark.BackupId != leftover.Id || !mark.MayRemove(minimumAge, now) || (full ? snapshots.Count > 0 : snapshots.Any(s => IsSnapshotOf(s.Name, mark.BackupId))))
            {
                continue;
            }

            if (mark.SourceSnapshot() is var (source, snapshot))
            {
                try
                {
                    if (Client.Snapshots(source).Any(s => s.Name == snapshot))
                    {
                        Client.RemoveSnapshot(source, snapshot);
                    }
                }
                catch (BackupException ex) when (ex.ErrorId == "RbdNotFound")
                {
                    // The source image is gone, and its snapshots with it.
                }
            }

            if (full)
            {
                Client.RemoveImage(baseImage);
            }
            else
            {
                Client.RemoveImageMetadata(baseImage, key);
            }

            removed.Add(leftover);
        }

        return removed;
    }

    private static bool IsSnapshotOf(string snapshot, Guid backupId) =>
        SnapshotRegex().Match(snapshot) is { Success: true } m && Guid.TryParse(m.Groups["bid"].Value, out var id) && id == backupId;

    public BackupChain GetChain(Guid backupId) => BackupGraph.Chain(List(), backupId, Repository);

    public IReadOnlyList<BackupInfo> GetDependents(Guid backupId, bool recursive, IReadOnlyList<BackupInfo>? backups = null) =>
        BackupGraph.Dependents(backups ?? List(), backupId, recursive);

    public IReadOnlyList<BackupInfo> Remove(Guid backupId, bool includeDependents, CancellationToken cancellationToken = default) =>
        RbdBackupOperation.Remove(this, backupId, includeDependents);

    /// <summary>The backup (and with <paramref name="includeChain"/> every backup it needs), as one result.</summary>
    public Operations.VerificationResult Verify(Guid backupId, bool includeChain, IProgress<OperationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var ids = includeChain ? GetChain(backupId).Backups.Select(b => b.Id).ToList() : [backupId];
        var results = ids.Select(id => RbdVerifyOperation.Run(this, id, cancellationToken)).ToList();
        var own = results[^1];
        return new Operations.VerificationResult
        {
            Backup = own.Backup,
            Verified = ids,
            ObjectsChecked = results.Sum(r => r.ObjectsChecked),
            BytesChecked = results.Sum(r => r.BytesChecked),
            Issues = results.SelectMany(r => r.Issues).ToList(),
            Duration = TimeSpan.FromTicks(results.Sum(r => r.Duration.Ticks)),
        };
    }

    public static bool IsRbdRepository(string repository) => repository.StartsWith(RepositoryPrefix, StringComparison.OrdinalIgnoreCase);

    public static RbdBackupPool Open(RbdClient client, string repository)
    {
        var spec = repository[RepositoryPrefix.Length..];
        var parts = spec.Split('/');
        return parts.Length switch
        {
            1 => new RbdBackupPool(client, parts[0]),
            2 => new RbdBackupPool(client, parts[0], parts[1]),
            _ => throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidRbdRepository", $"'{repository}' is not an RBD repository; write rbd:<pool> or rbd:<pool>/<namespace>.", repository),
        };
    }

    public RbdImageRef Image(string name) => new(Pool, Namespace, RbdNames.Validate(name, "image"));

    public static string BaseName(Guid volumeId, Guid backupId) => $"volume-{volumeId:D}.backup.{backupId:D}";

    public static string SnapshotName(Guid backupId, DateTime utc) =>
        $"backup.{backupId:D}.snap.{(utc - DateTime.UnixEpoch).TotalSeconds.ToString("F6", CultureInfo.InvariantCulture)}";

    /// <summary>The volume id of an RBD image: derived from its spec, as for files from their path.</summary>
    public static Guid VolumeIdFor(RbdImageRef image) => VolumeIdentity.NameBased(RbdNamespace, "rbd:" + image.Spec);

    private static readonly Guid RbdNamespace = new("0b5f1c6e-1f64-5a9e-8c0d-7b9a0e3c2d41");

    [GeneratedRegex(@"^volume-(?<vid>[0-9a-f\-]{36})\.backup\.(?<bid>[0-9a-f\-]{36}|base)$", RegexOptions.CultureInvariant)]
    private static partial Regex BaseImageRegex();

    /// <summary>Cinder's backup snapshot pattern: ^backup\.([a-z0-9\-]+?)\.snap\.(.+)$.</summary>
    [GeneratedRegex(@"^backup\.(?<bid>[a-z0-9\-]+?)\.snap\.(?<ts>.+)$", RegexOptions.CultureInvariant)]
    public static partial Regex SnapshotRegex();

    /// <summary>
    /// What interrupted backups left on one base image: a new base image no backup snapshot made
    /// (full), or a mark whose backup never got its snapshot (incremental).
    /// </summary>
    private IEnumerable<BackupInfo> Leftovers(string imageName, IReadOnlyDictionary<string, string> meta, IReadOnlyList<RbdSnapshot> snapshots)
    {
        foreach (var (key, value) in meta.Where(m => RbdInFlight.IsKey(m.Key)).OrderBy(m => m.Key, StringComparer.Ordinal))
        {
            var full = key == RbdInFlight.Key;
            if (RbdInFlight.Parse(value) is not { } mark || (!full && key != RbdInFlight.IncrementalKey(mark.BackupId))
                || (full ? snapshots.Any(s => SnapshotRegex().IsMatch(s.Name)) : snapshots.Any(s => IsSnapshotOf(s.Name, mark.BackupId))))
            {
                continue;
            }

            var took = mark.SourceSnapshot() is var (source, snapshot) ? $", which took snapshot {source.SnapSpec(snapshot)}" : "";
            yield return new BackupInfo
            {
                Id = mark.BackupId, VolumeId = mark.VolumeId, CreatedUtc = mark.StartedUtc, Status = BackupStatus.Incomplete,
                Compression = "none", Consistency = "rbd-snapshot", WrittenBy = "BlockBackup", Repository = Repository,
                Container = imageName, Prefix = string.Empty, ServiceMetadata = ServiceMetadata(imageName),
                Problem = $"an interrupted {(full ? "full backup's base image" : "incremental backup")} (started {mark.StartedUtc:u} on {mark.Host}, process {mark.Pid}{(mark.HolderIsGone ? ", which no longer runs" : "")}){took}",
            };
        }
    }

    /// <summary>
    /// The backups in the pool (or of one volume: only its base images are read), oldest first;
    /// with <paramref name="includeIncomplete"/> also the base images interrupted full backups left.
    /// </summary>
    public IReadOnlyList<BackupInfo> List(Guid? onlyVolume = null, bool includeIncomplete = false)
    {
        var result = new List<BackupInfo>();
        foreach (var imageName in Client.ListImages(Pool, Namespace))
        {
            var m = BaseImageRegex().Match(imageName);
            if (!m.Success || (onlyVolume is { } only && m.Groups["vid"].Value != only.ToString("D")))
            {
                continue;
            }

            var baseImage = Image(imageName);
            var volumeId = Guid.Parse(m.Groups["vid"].Value);
            IReadOnlyList<RbdSnapshot> snapshots;
            IReadOnlyDictionary<string, string> meta;
            try
            {
                snapshots = Client.Snapshots(baseImage);
                meta = Client.ImageMetadata(baseImage);
            }
            catch (BackupException ex) when (ex.ErrorId == "RbdNotFound")
            {
                continue; // removed meanwhile
            }

            if (includeIncomplete)
            {
                result.AddRange(Leftovers(imageName, meta, snapshots));
            }

            Guid? previous = null;
            var listed = new HashSet<Guid>();
            foreach (var snap in snapshots.OrderBy(s => s.Id))
            {
                var sm = SnapshotRegex().Match(snap.Name);
                if (!sm.Success || !Guid.TryParse(sm.Groups["bid"].Value, out var backupId))
                {
                    continue;
                }

                var record = meta.TryGetValue(MetaPrefix + backupId.ToString("D"), out var json) ? Record.Parse(json) : null;
                result.Add(new BackupInfo
                {
                    Id = backupId,
                    VolumeId = record?.VolumeId ?? volumeId,
                    Name = record?.Name,
                    Description = record?.Description,
                    CreatedUtc = record?.CreatedUtc ?? SnapshotTime(sm.Groups["ts"].Value) ?? snap.Timestamp ?? DateTime.MinValue,
                    ParentId = record is null ? previous : record.ParentId,
                    Status = BackupStatus.Available,
                    VolumeSize = snap.Size,
                    StoredBytes = 0,
                    ObjectCount = 0,
                    Compression = "none",
                    Consistency = "rbd-snapshot",
                    Source = record?.Source,
                    Policy = record?.Policy,
                    WrittenBy = record is null ? "Cinder" : "BlockBackup",
                    Repository = Repository,
                    Container = imageName,
                    Prefix = snap.Name,
                    ServiceMetadata = ServiceMetadata(record?.Base ?? imageName),
                });
                listed.Add(backupId);
                previous = backupId;
            }

            // Backups whose snapshot was removed from the base are still known from their records:
            // restorable from the base's current content only while nothing newer was written to it.
            foreach (var (key, value) in meta)
            {
                if (key.StartsWith(MetaPrefix, StringComparison.Ordinal) && Record.Parse(value) is { Snapshot: not null } orphan && !listed.Contains(orphan.Id))
                {
                    result.Add(new BackupInfo
                    {
                        Id = orphan.Id, VolumeId = orphan.VolumeId, Name = orphan.Name, Description = orphan.Description,
                        CreatedUtc = orphan.CreatedUtc, ParentId = orphan.ParentId, Status = BackupStatus.Available,
                        VolumeSize = snapshots.Count > 0 ? snapshots.Max(x => x.Size) : Client.ImageSize(baseImage) ?? 0,
                        Compression = "none", Consistency = "rbd-snapshot", Source = orphan.Source, WrittenBy = "BlockBackup",
                        Repository = Repository, Container = imageName, Prefix = orphan.Snapshot,
                        ServiceMetadata = ServiceMetadata(orphan.Base ?? imageName),
                        Problem = $"its snapshot '{orphan.Snapshot}' is gone from base image '{imageName}'",
                    });
                }
            }
        }

        return result.OrderBy(b => b.CreatedUtc).ThenBy(b => b.Prefix, StringComparer.Ordinal).ToList();
    }

    public BackupInfo Get(Guid backupId) =>
        List().FirstOrDefault(b => b.Id == backupId)
        ?? throw new BackupException(BackupErrorKind.NotFound, "BackupNotFound", $"No backup with id {backupId} in {Repository}.", backupId);

    internal static void WriteRecord(Librbd.RbdImage baseImage, Record record) =>
        baseImage.SetMetadata(MetaPrefix + record.Id.ToString("D"), record.ToJson());

    internal void RemoveRecord(RbdImageRef baseImage, Guid backupId) =>
        Client.RemoveImageMetadata(baseImage, MetaPrefix + backupId.ToString("D"));

    /// <summary>Cinder's service_metadata for a Ceph backup.</summary>
    public static string ServiceMetadata(string baseImage) => new JObject { ["base"] = baseImage }.ToString(Formatting.None);

    /// <summary>The base image a backup was written to, from its service_metadata (Cinder's restore looks there first).</summary>
    public static string? RecordedBase(BackupInfo backup)
    {
        try
        {
            return backup.ServiceMetadata is { } json ? (string?)Format.JsonDocumentText.ParseObject(json)["base"] : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static DateTime? SnapshotTime(string epoch) =>
        double.TryParse(epoch, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) ? DateTime.UnixEpoch.AddSeconds(seconds) : null;

    /// <summary>BlockBackup's fields for one backup, kept in the base image's metadata.</summary>
    internal sealed record Record(Guid Id, Guid VolumeId, Guid? ParentId, string? Name, string? Description, DateTime CreatedUtc, string? Source, string? Base = null, string? Snapshot = null, string? Policy = null)
    {
        public string ToJson() => new JObject
        {
            ["id"] = Id.ToString("D"),
            ["volume_id"] = VolumeId.ToString("D"),
            ["parent_id"] = ParentId?.ToString("D"),
            ["name"] = Name,
            ["description"] = Description,
            ["created_at"] = CreatedUtc.ToString("O", CultureInfo.InvariantCulture),
            ["source"] = Source,
            ["base"] = Base,
            ["snapshot"] = Snapshot,
            ["policy"] = Policy,
        }.ToString(Formatting.None);

        public static Record? Parse(string json)
        {
            try
            {
                // Dates stay strings: Newtonsoft would otherwise turn created_at into a DateTime and
                // the string cast back would drop the sub-second part that orders backups.
                using var reader = new JsonTextReader(new StringReader(json)) { DateParseHandling = DateParseHandling.None };
                var o = JObject.Load(reader);
                return new Record(
                    Guid.Parse((string)o["id"]!), Guid.Parse((string)o["volume_id"]!),
                    (string?)o["parent_id"] is { } p ? Guid.Parse(p) : null,
                    (string?)o["name"], (string?)o["description"],
                    DateTime.Parse((string)o["created_at"]!, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind).ToUniversalTime(),
                    (string?)o["source"], (string?)o["base"], (string?)o["snapshot"], (string?)o["policy"]);
            }
            catch (Exception ex) when (ex is JsonException or FormatException or ArgumentNullException or NullReferenceException)
            {
                return null; // treat as a backup known only by its names
            }
        }
    }
}
