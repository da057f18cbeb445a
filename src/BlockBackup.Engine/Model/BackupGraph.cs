using BlockBackup.Engine.Errors;

namespace BlockBackup.Engine;

/// <summary>Parent/child relations among the backups of one repository (file or RBD pool), from its listing.</summary>
public static class BackupGraph
{
    /// <summary>Backups whose parent is <paramref name="backupId"/>, and theirs when recursive (children before grandchildren).</summary>
    public static IReadOnlyList<BackupInfo> Dependents(IReadOnlyList<BackupInfo> backups, Guid backupId, bool recursive = true)
    {
        var result = new List<BackupInfo>();
        var frontier = new Queue<Guid>([backupId]);
        while (frontier.Count > 0)
        {
            var id = frontier.Dequeue();
            foreach (var child in backups.Where(b => b.ParentId == id))
            {
                result.Add(child);
                if (recursive)
                {
                    frontier.Enqueue(child.Id);
                }
            }
        }

        return result;
    }

    /// <summary>
    /// The entry an id stands for when a listing holds it more than once (a copy, or a forged
    /// record reusing it): the available one, else the first; null when none has it.
    /// </summary>
    public static BackupInfo? ById(IEnumerable<BackupInfo> backups, Guid backupId)
    {
        BackupInfo? first = null;
        foreach (var b in backups.Where(b => b.Id == backupId))
        {
            if (b.Status == BackupStatus.Available)
            {
                return b;
            }

            first ??= b;
        }

        return first;
    }

    /// <summary>The chain of a backup, full backup first, from the available backups of <paramref name="repository"/>.</summary>
    public static BackupChain Chain(IReadOnlyList<BackupInfo> backups, Guid backupId, string repository)
    {
        var byId = backups.Where(b => b.Status == BackupStatus.Available).GroupBy(b => b.Id).ToDictionary(g => g.Key, g => g.First());
        if (!byId.TryGetValue(backupId, out var current))
        {
            throw new BackupException(BackupErrorKind.NotFound, "BackupNotFound", $"No available backup with id {backupId} in repository '{repository}'.", backupId);
        }

        var chain = new List<BackupInfo> { current };
        var seen = new HashSet<Guid> { current.Id };
        while (current.ParentId is { } parentId)
        {
            if (!byId.TryGetValue(parentId, out var parent))
            {
                var state = backups.FirstOrDefault(b => b.Id == parentId) is { } p ? $"is {p.Status.ToString().ToLowerInvariant()}{(p.Problem is null ? "" : ": " + p.Problem.TrimEnd('.'))}" : "is not in the repository (deleted or never imported)";
                throw new BackupException(BackupErrorKind.InvalidData, "BackupChainBroken",
                    $"The chain of backup {backupId} is broken: parent {parentId} of backup {current.Id} {state}. Backups from {current.Id} on cannot be restored from '{repository}'.",
                    parentId);
            }

            if (!seen.Add(parent.Id) || parent.VolumeId != current.VolumeId)
            {
                throw new BackupException(BackupErrorKind.InvalidData, "BackupChainInvalid",
                    $"The chain of backup {backupId} is invalid at parent {parent.Id}: {(parent.VolumeId != current.VolumeId ? "it belongs to another volume" : "the parents form a cycle")}.",
                    parent.Id);
            }

            chain.Add(parent);
            current = parent;
        }

        chain.Reverse();
        return new BackupChain(chain);
    }
}
