using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Format;
using BlockBackup.Engine.Operations;

namespace BlockBackup.Engine.Repository;

/// <summary>
/// The rules over a listing that every chunked layout shares (directory and object store): how a
/// backup is picked by id, sizes inherited along chains, the removal order, damaged backups in a
/// verification. Each layout lists its own way; what it decides from the list is written once here.
/// </summary>
internal static class RepositoryListing
{
    /// <summary>Cinder's metadata has no volume size; an incremental inherits its parent's (volumes never shrink).</summary>
    public static void InheritVolumeSizes(List<BackupInfo> found)
    {
        var byId = found.Where(b => b.Status == BackupStatus.Available).GroupBy(b => b.Id).ToDictionary(g => g.Key, g => g.First());
        for (var i = 0; i < found.Count; i++)
        {
            if (found[i].VolumeSize == 0 && found[i].ParentId is { } parentId)
            {
                found[i] = found[i] with { VolumeSize = InheritedSize(parentId, byId, 0) };
                byId[found[i].Id] = found[i];
            }
        }
    }

    private static long InheritedSize(Guid id, Dictionary<Guid, BackupInfo> byId, int depth) =>
        depth > 10000 || !byId.TryGetValue(id, out var b) ? 0
        : b.VolumeSize != 0 || b.ParentId is null ? b.VolumeSize
        : InheritedSize(b.ParentId.Value, byId, depth + 1);

    /// <summary>The available backup with that id, else the precise error for what stands there (<paramref name="whereIncomplete"/> names an incomplete one's place).</summary>
    public static BackupInfo Available(Guid backupId, IReadOnlyList<BackupInfo> all, string location, Func<BackupInfo, string> whereIncomplete)
    {
        var matches = all.Where(b => b.Id == backupId).ToList();
        if (matches.FirstOrDefault(b => b.Status == BackupStatus.Available) is { } available)
        {
            return available;
        }

        throw matches.FirstOrDefault() switch
        {
            { Status: BackupStatus.Damaged } d => new BackupException(BackupErrorKind.InvalidData, "BackupDamaged", d.Problem ?? $"Backup {backupId} is damaged.", backupId),
            { Status: BackupStatus.Creating } => new BackupException(BackupErrorKind.ResourceBusy, "BackupInProgress", $"Backup {backupId} is still being written.", backupId),
            { Status: BackupStatus.Incomplete } i => new BackupException(BackupErrorKind.InvalidData, "BackupIncomplete",
                $"Backup {backupId} {whereIncomplete(i)} is incomplete (its metadata was never written: the backup was interrupted). It cannot be restored; remove it with Remove-VolumeBackup -Incomplete.", backupId),
            _ => new BackupException(BackupErrorKind.NotFound, "BackupNotFound", $"No backup with id {backupId} in repository '{location}'.", backupId),
        };
    }

    /// <summary>
    /// The entry a removal decided on, found again in a fresh listing by id and place (prefix and
    /// container), never by id alone: a forged entry may carry another backup's id, and removing
    /// "the first with that id" would then delete the wrong one.
    /// </summary>
    public static BackupInfo Same(BackupInfo decided, IReadOnlyList<BackupInfo> relisted) =>
        relisted.FirstOrDefault(b => b.Id == decided.Id && b.Prefix == decided.Prefix && b.Container == decided.Container)
        ?? throw new BackupException(BackupErrorKind.NotFound, "BackupNotFound", $"Backup {decided.Id} ('{decided.Container}', '{decided.Prefix}') was removed meanwhile.", decided.Id);

    /// <summary>
    /// What a removal by id means: the available backup with that id (the one Get returns),
    /// else the only other entry with it (incomplete or damaged); never one being written.
    /// </summary>
    public static BackupInfo ById(Guid backupId, IReadOnlyList<BackupInfo> all, string location) =>
        BackupGraph.ById(all.Where(b => b.Status != BackupStatus.Creating), backupId)
        ?? throw new BackupException(BackupErrorKind.NotFound, "BackupNotFound", $"No backup with id {backupId} in repository '{location}' (or it is still being written).", backupId);

    /// <summary>
    /// The backups depending on <paramref name="target"/>. Children name their parent by id only,
    /// so they belong to the available entry with that id: an incomplete or damaged twin of it
    /// (same id, another place) has none, and removing the twin never takes them along.
    /// </summary>
    public static IReadOnlyList<BackupInfo> DependentsOf(BackupInfo target, IReadOnlyList<BackupInfo> all) =>
        target.Status != BackupStatus.Available && all.Any(b => b.Id == target.Id && b.Status == BackupStatus.Available)
            ? []
            : BackupGraph.Dependents(all, target.Id, recursive: true);

    /// <summary>What removing <paramref name="target"/> deletes, dependents first (newest first); refused while it has dependents unless asked.</summary>
    public static List<BackupInfo> RemovalOrder(BackupInfo target, IReadOnlyList<BackupInfo> dependents, bool includeDependents)
    {
        if (dependents.Count > 0 && !includeDependents)
        {
            throw new BackupException(BackupErrorKind.InvalidOperation, "BackupHasDependents",
                $"Backup {target.Id} has {dependents.Count} dependent incremental backup(s) ({string.Join(", ", dependents.Select(d => d.Id))}); deleting it would make them unrestorable. Delete them first, or pass -IncludeDependents to delete them too.",
                target.Id);
        }

        return dependents.Reverse().Append(target).ToList();
    }

    /// <summary>
    /// A damaged backup (metadata that fails validation) verifies as an invalid result naming its
    /// problem, not an error, so verifying a whole repository reports it with the rest; null when
    /// the backup is not (only) damaged.
    /// </summary>
    public static VerificationResult? DamagedVerification(Guid backupId, IEnumerable<BackupInfo> listed)
    {
        var matches = listed.Where(b => b.Id == backupId).ToList();
        if (matches.Count == 0 || !matches.All(b => b.Status == BackupStatus.Damaged))
        {
            return null;
        }

        var damaged = matches[0];
        return new VerificationResult
        {
            Backup = damaged,
            Verified = [backupId],
            ObjectsChecked = 0,
            BytesChecked = 0,
            Issues = [new VerificationIssue(backupId, ObjectNaming.MetadataName(damaged.Prefix), null, VerificationProblem.MetadataInvalid, damaged.Problem ?? "the metadata fails validation")],
            Duration = TimeSpan.Zero,
        };
    }
}
