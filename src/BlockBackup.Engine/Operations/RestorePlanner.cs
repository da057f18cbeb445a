using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Hashing;
using BlockBackup.Engine.Format;
using BlockBackup.Engine.Repository;

namespace BlockBackup.Engine.Operations;

/// <summary>One object and the parts of it the restore needs (the rest is overwritten by newer backups).</summary>
// Container, not the object's key: one string shared by a backup's tasks.
internal sealed record RestoreTask(string Container, ObjectDescriptor Object, Guid BackupId, IReadOnlyList<ByteRange> Needed);

/// <summary>
/// Decides, before anything is written, where every byte of the restored volume comes from: the
/// newest backup in the chain that has an object covering it. Each block is then written exactly
/// once, instead of layer over layer as Cinder does. Ranges no object covers, and objects whose
/// MD5 is that of zeros, restore to zeros without being read (a sparse 1 TiB volume is mostly
/// such objects). Nothing is held per object beyond the metadata itself: the plan is a sweep
/// over the chain (<see cref="ChainSweep"/>), walked once to check and once to restore.
/// </summary>
internal sealed class RestorePlan
{
    private readonly BackupChain _chain;
    private readonly IReadOnlyList<IReadOnlyList<ObjectDescriptor>> _layers;

    private RestorePlan(BackupChain chain, IReadOnlyList<IReadOnlyList<ObjectDescriptor>> layers, long size)
    {
        _chain = chain;
        _layers = layers;
        VolumeSize = size;
    }

    public long VolumeSize { get; }

    /// <summary>Checks every object's extent against the volume and the hash blocks; refuses a damaged one before anything is written.</summary>
    public static RestorePlan Create(BackupChain chain, IReadOnlyList<BackupMetadata> layers, int hashBlockSize, long size)
    {
        var ordered = new IReadOnlyList<ObjectDescriptor>[layers.Count];
        for (var i = 0; i < layers.Count; i++)
        {
            var backup = chain.Backups[i];
            foreach (var o in layers[i].Objects)
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

            // The metadata reader refused objects that overlap within a backup, which the sweep relies on.
            ordered[i] = ObjectOrder.ByOffset(layers[i].Objects);
        }

        return new RestorePlan(chain, ordered, size);
    }

    /// <summary>The whole volume in order, each stretch with the backup and object it comes from.</summary>
    public IEnumerable<ChainSegment> Segments() => ChainSweep.Segments(_layers, VolumeSize);

    /// <summary>True when the stretch restores to zeros without reading anything.</summary>
    public static bool IsZeros(ChainSegment segment) => segment.Object is null || ZeroBlock.IsZeroObject(segment.Object);

    public BackupInfo BackupOf(ChainSegment segment) => _chain.Backups[segment.Layer];

    /// <summary>
    /// The objects to read and what each must give, roughly in volume order: a task is handed
    /// out once the sweep has passed its object's end (each backup has at most one open at a time).
    /// </summary>
    public IEnumerable<RestoreTask> Tasks()
    {
        var open = new (ObjectDescriptor Object, List<ByteRange> Needed)?[_layers.Count];
        foreach (var s in Segments())
        {
            for (var i = 0; i < open.Length; i++)
            {
                if (open[i] is { } done && done.Object.End <= s.Start)
                {
                    open[i] = null;
                    yield return Task(i, done.Object, done.Needed);
                }
            }

            if (IsZeros(s))
            {
                continue;
            }

            if (open[s.Layer] is { } current && current.Object.Offset == s.Object!.Offset) // objects of one backup do not overlap
            {
                current.Needed.Add(s.Range);
            }
            else
            {
                // Objects of one backup do not overlap, so the previous one was handed out above.
                open[s.Layer] = (s.Object!, [s.Range]);
            }
        }

        foreach (var (layer, task) in open.Select((t, i) => (i, t)).Where(t => t.t is not null).OrderBy(t => t.t!.Value.Needed[0].Start))
        {
            yield return Task(layer, task!.Value.Object, task.Value.Needed);
        }
    }

    private RestoreTask Task(int layer, ObjectDescriptor o, List<ByteRange> needed) =>
        new(_chain.Backups[layer].Container, o, _chain.Backups[layer].Id, needed);

    private static BackupException Invalid(BackupInfo backup, ObjectDescriptor o, string what) =>
        new(BackupErrorKind.InvalidData, "InvalidObjectExtent",
            $"Backup {backup.Id}: object '{o.Name}' {what}. The metadata is damaged; nothing was written.", o.Name);
}
