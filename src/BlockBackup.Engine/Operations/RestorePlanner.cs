using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Hashing;
using BlockBackup.Engine.Format;
using BlockBackup.Engine.Repository;

namespace BlockBackup.Engine.Operations;

/// <summary>One object and the parts of it the restore needs (the rest is overwritten by newer backups).</summary>
// Container, not the object's key: one string shared by a backup's tasks (a 4 TiB restore has half a million).
internal sealed record RestoreTask(string Container, ObjectDescriptor Object, Guid BackupId, IReadOnlyList<ByteRange> Needed);

/// <summary>
/// Decides, before anything is written, where every byte of the restored volume comes from: the
/// newest backup in the chain that has an object covering it. Each block is then written exactly
/// once, instead of layer over layer as Cinder does. Ranges no object covers must be zero.
/// </summary>
internal sealed class RestorePlan
{
    public required IReadOnlyList<RestoreTask> Tasks { get; init; }
    public required IReadOnlyList<ByteRange> Gaps { get; init; }

    /// <summary>
    /// Needed ranges of objects whose MD5 is that of zeros: they restore to zeros without being
    /// read (a sparse 1 TiB volume is mostly such objects), once the hash list agrees.
    /// </summary>
    public required IReadOnlyList<(ByteRange Range, ObjectDescriptor Object, Guid BackupId)> ZeroObjects { get; init; }
    public required long VolumeSize { get; init; }

    public static RestorePlan Create(IChunkedRepository repository, BackupChain chain, IReadOnlyList<BackupMetadata> layers, int hashBlockSize, long size)
    {
        var covered = new List<ByteRange>();
        var tasks = new List<RestoreTask>();
        var zeros = new List<(ByteRange, ObjectDescriptor, Guid)>();
        for (var i = layers.Count - 1; i >= 0; i--)
        {
            var backup = chain.Backups[i];
            var objects = layers[i].Objects.OrderBy(o => o.Offset).ToList();
            foreach (var o in objects)
            {
                if (o.End > size)
                {
                    throw Invalid(backup, o, $"ends at {o.End}, beyond the volume size {size}");
                }

                if (o.Offset % hashBlockSize != 0 || (o.Length % hashBlockSize != 0 && o.End != size))
                {
                    throw Invalid(backup, o, $"is not aligned to the {hashBlockSize}-byte hash blocks (offset {o.Offset}, length {o.Length})");
                }
            }

            var ranges = objects.Select(o => new ByteRange(o.Offset, o.End)).ToList();
            foreach (var o in objects)
            {
                var needed = Ranges.Subtract([new ByteRange(o.Offset, o.End)], covered);
                if (needed.Count > 0 && ZeroBlock.IsZeroObject(o))
                {
                    zeros.AddRange(needed.Select(r => (r, o, backup.Id)));
                }
                else if (needed.Count > 0)
                {
                    tasks.Add(new RestoreTask(backup.Container, o, backup.Id, needed));
                }
            }

            covered = Ranges.Union(covered, ranges);
        }

        return new RestorePlan
        {
            Tasks = tasks.OrderBy(t => t.Needed[0].Start).ToList(),
            Gaps = Ranges.Subtract([new ByteRange(0, size)], covered),
            ZeroObjects = zeros.OrderBy(z => z.Item1.Start).ToList(),
            VolumeSize = size,
        };
    }

    private static BackupException Invalid(BackupInfo backup, ObjectDescriptor o, string what) =>
        new(BackupErrorKind.InvalidData, "InvalidObjectExtent",
            $"Backup {backup.Id}: object '{o.Name}' {what}. The metadata is damaged; nothing was written.", o.Name);
}
