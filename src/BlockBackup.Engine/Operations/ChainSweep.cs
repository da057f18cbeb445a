using BlockBackup.Engine.Format;

namespace BlockBackup.Engine.Operations;

/// <summary>
/// A stretch of a chain's volume and the backup that provides it on restore: the newest layer
/// with an object covering it (<see cref="Object"/> null and <see cref="Layer"/> -1 where no
/// object does; those bytes are zeros).
/// </summary>
internal readonly record struct ChainSegment(long Start, long End, int Layer, ObjectDescriptor? Object)
{
    public ByteRange Range => new(Start, End);
}

/// <summary>
/// Walks a chain's volume from offset 0 to its end, one cursor per layer, and says where each
/// stretch comes from, in volume order, without building per-object range lists: a 4 TiB chain
/// has half a million objects per full backup, and a plan holding them (and LINQ's sort buffers)
/// was most of a restore's memory. Pure: no I/O, no validation (the caller checks extents first).
/// </summary>
internal static class ChainSweep
{
    /// <param name="layers">Each backup's objects in offset order (<see cref="ObjectOrder.ByOffset"/>), the full backup first, the newest last; within a layer objects do not overlap.</param>
    /// <param name="size">The volume size; objects are clipped to it.</param>
    public static IEnumerable<ChainSegment> Segments(IReadOnlyList<IReadOnlyList<ObjectDescriptor>> layers, long size)
    {
        var cursor = new int[layers.Count];
        // Each layer's current object, fetched once per object (an ObjectList makes a descriptor per access).
        var current = new ObjectDescriptor?[layers.Count];
        for (var i = 0; i < layers.Count; i++)
        {
            current[i] = layers[i].Count > 0 ? layers[i][0] : null;
        }

        long position = 0;
        while (position < size)
        {
            var winner = -1;
            var end = size;
            // Newest first: the first layer covering the position provides it, up to its object's
            // end or where a newer layer's next object begins, whichever comes first.
            for (var i = layers.Count - 1; i >= 0; i--)
            {
                while (current[i] is { } passed && passed.End <= position)
                {
                    current[i] = ++cursor[i] < layers[i].Count ? layers[i][cursor[i]] : null;
                }

                if (current[i] is not { } o)
                {
                    continue;
                }

                if (o.Offset <= position)
                {
                    winner = i;
                    end = Math.Min(end, o.End);
                    break;
                }

                end = Math.Min(end, o.Offset);
            }

            yield return new ChainSegment(position, end, winner, winner < 0 ? null : current[winner]);
            position = end;
        }
    }
}
