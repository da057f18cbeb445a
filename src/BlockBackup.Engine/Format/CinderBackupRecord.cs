using System.Globalization;
using System.Text;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Repository;
using Newtonsoft.Json;
using Newtonsoft.Json.Linq;

namespace BlockBackup.Engine.Format;

/// <summary>
/// Cinder's backup-export record: <c>backup_service</c> (the driver class) and <c>backup_url</c>,
/// the standard base64 of the JSON of the backup row plus <c>driver_info</c>. `cinder
/// backup-import` recreates the row with the same id, so an exported chain can be restored by
/// an OpenStack deployment whose posix/NFS driver sees the same repository, and vice versa.
/// </summary>
public sealed class CinderBackupRecord
{
    public const string PosixService = "cinder.backup.drivers.posix.PosixBackupDriver";
    public const string NfsService = "cinder.backup.drivers.nfs.NFSBackupDriver";
    public const string CephService = "cinder.backup.drivers.ceph.CephBackupDriver";
    public const string S3Service = "cinder.backup.drivers.s3.S3BackupDriver";
    public const string SwiftService = "cinder.backup.drivers.swift.SwiftBackupDriver";

    public required Guid BackupId { get; init; }
    public required string BackupService { get; init; }
    public required string BackupUrl { get; init; }

    public override string ToString() => $"{BackupId} ({BackupService})";

    public static CinderBackupRecord Export(BackupInfo backup, string backupService = PosixService)
    {
        // A backup in an RBD backup pool: Cinder's Ceph driver fields (container = pool, {"base": …}).
        var rbd = Rbd.RbdBackupPool.IsRbdRepository(backup.Repository);
        if (rbd)
        {
            backupService = CephService;
        }

        var created = backup.CreatedUtc.ToString("yyyy-MM-ddTHH:mm:ss.ffffff", CultureInfo.InvariantCulture);
        var row = new JObject
        {
            ["id"] = backup.Id.ToString("D"),
            ["user_id"] = null,
            ["project_id"] = null,
            ["volume_id"] = backup.VolumeId.ToString("D"),
            ["host"] = null,
            ["availability_zone"] = null,
            ["container"] = rbd ? backup.Repository[Rbd.RbdBackupPool.RepositoryPrefix.Length..] : backup.Container.Replace('\\', '/'),
            ["parent_id"] = backup.ParentId?.ToString("D"),
            ["status"] = "available",
            ["fail_reason"] = null,
            // Cinder sizes are whole GiB.
            ["size"] = Math.Max(1, (backup.VolumeSize + (1L << 30) - 1) >> 30),
            ["display_name"] = backup.Name,
            ["display_description"] = backup.Description,
            ["service_metadata"] = rbd ? new JObject { ["base"] = backup.Container }.ToString(Formatting.None) : backup.Prefix,
            ["service"] = backupService,
            ["object_count"] = backup.ObjectCount,
            ["temp_volume_id"] = null,
            ["temp_snapshot_id"] = null,
            ["num_dependent_backups"] = 0,
            ["snapshot_id"] = null,
            ["data_timestamp"] = created,
            ["restore_volume_id"] = null,
            ["metadata"] = new JObject(),
            ["encryption_key_id"] = null,
            ["created_at"] = created,
            ["updated_at"] = created,
            ["deleted_at"] = null,
            ["deleted"] = false,
            ["driver_info"] = new JObject(),
        };
        var json = row.ToString(Formatting.None);
        return new CinderBackupRecord { BackupId = backup.Id, BackupService = backupService, BackupUrl = Convert.ToBase64String(Encoding.UTF8.GetBytes(json)) };
    }

    /// <summary>
    /// Decodes a record and finds its backup in the repository (the repository describes itself,
    /// so registering means checking that the backup's files are there and match the record).
    /// </summary>
    public static BackupInfo Import(Repository.IChunkedRepository repository, string backupService, string backupUrl)
    {
        JObject row;
        try
        {
            row = JsonDocumentText.ParseObject(Encoding.UTF8.GetString(Convert.FromBase64String(backupUrl.Trim())));
        }
        catch (Exception ex) when (ex is FormatException or JsonException or DecoderFallbackException)
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidBackupRecord",
                "The backup_url is not base64-encoded JSON of a backup row (as `cinder backup-export` prints it).", backupUrl, ex);
        }

        var objectStore = repository.Kind is Repository.RepositoryKind.S3 or Repository.RepositoryKind.Swift;
        var kindWord = repository.Kind switch { Repository.RepositoryKind.S3 => "s3", Repository.RepositoryKind.Swift => "swift", _ => "posix/NFS" };
        var serviceMatches = objectStore
            ? backupService.Contains(kindWord, StringComparison.OrdinalIgnoreCase)
            : backupService.Contains("posix", StringComparison.OrdinalIgnoreCase) || backupService.Contains("nfs", StringComparison.OrdinalIgnoreCase);
        if (!serviceMatches)
        {
            throw new BackupException(BackupErrorKind.NotSupported, "UnsupportedBackupService",
                $"Backup service '{backupService}' does not write {kindWord} repositories like '{repository.Location}'; import it into a repository of its own kind ({string.Join(" or ", repository.BackupServices)} here).", backupService);
        }

        // Cinder's import requires these fields too.
        foreach (var field in new[] { "id", "size", "container", "service_metadata" })
        {
            if (row[field] is null || row[field]!.Type == JTokenType.Null)
            {
                throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidBackupRecord", $"The backup record has no '{field}'.", backupUrl);
            }
        }

        if (!Guid.TryParse((string?)row["id"], out var id))
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidBackupRecord", $"The backup record's id '{row["id"]}' is not a UUID.", backupUrl);
        }

        var container = ((string)row["container"]!).Replace('\\', '/');
        var prefix = (string)row["service_metadata"]!;
        var safe = objectStore
            ? !prefix.Split('/').Any(part => part is "" or "." or "..") && ObjectNaming.ObjectStoreNameRegex().IsMatch(prefix[(prefix.LastIndexOf("volume_", StringComparison.Ordinal) is var v and >= 0 ? v : 0)..] + ObjectNaming.MetadataSuffix)
            : !container.Split('/').Any(part => part is "..") && !Path.IsPathRooted(container) && ObjectNaming.MetadataFileRegex().IsMatch(prefix + ObjectNaming.MetadataSuffix);
        if (!safe)
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidBackupRecord",
                $"The backup record's container '{container}' or object prefix '{prefix}' is not a safe {kindWord} location.", backupUrl);
        }

        if (repository is Repository.ObjectStoreRepository bucket && !string.Equals(bucket.Container, container, StringComparison.Ordinal))
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "BackupRecordMismatch",
                $"The backup record names the {kindWord} container '{container}', but this repository is '{repository.Location}'; import it into {kindWord}://{container}.", backupUrl);
        }

        var backup = repository.List(includeIncomplete: true).FirstOrDefault(b => b.Id == id);
        if (backup is null)
        {
            throw new BackupException(BackupErrorKind.NotFound, "BackupFilesNotFound",
                $"Backup {id} is not in repository '{repository.Location}': copy {(objectStore ? $"the objects starting with '{prefix}'" : $"the container '{container}' (files starting with '{prefix}')")} from the source repository, then import again.", id);
        }

        if (backup.Prefix != prefix)
        {
            throw new BackupException(BackupErrorKind.InvalidData, "BackupRecordMismatch",
                $"Backup {id} in '{repository.Location}' has object prefix '{backup.Prefix}', but the record says '{prefix}'.", id);
        }

        return repository.Get(id);
    }
}
