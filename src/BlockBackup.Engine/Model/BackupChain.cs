namespace BlockBackup.Engine;

/// <summary>The backups a restore needs: the full backup first, the requested backup last.</summary>
public sealed class BackupChain
{
    public BackupChain(IReadOnlyList<BackupInfo> backups)
    {
        if (backups.Count == 0)
        {
            throw new ArgumentException("A chain has at least one backup.", nameof(backups));
        }

        Backups = backups;
    }

    public IReadOnlyList<BackupInfo> Backups { get; }
    public BackupInfo Full => Backups[0];
    public BackupInfo Target => Backups[^1];
    public Guid BackupId => Target.Id;
    public Guid VolumeId => Target.VolumeId;
    public string Repository => Target.Repository;
    public int Length => Backups.Count;
    public long VolumeSize => Target.VolumeSize;
    public long StoredBytes => Backups.Sum(b => b.StoredBytes);

    public override string ToString() => string.Join(" -> ", Backups.Select(b => b.Name ?? b.Id.ToString()));
}
