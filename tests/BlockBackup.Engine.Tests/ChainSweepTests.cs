using BlockBackup.Engine.Compression;
using BlockBackup.Engine.Format;
using BlockBackup.Engine.Operations;
using Xunit;

namespace BlockBackup.Engine.Tests;

/// <summary>
/// The sweep that plans restores and chain verification, against the obvious per-unit answer:
/// each unit of the volume comes from the newest layer with an object covering it.
/// </summary>
public class ChainSweepTests
{
    private const int Unit = 4;

    [Fact]
    public void EveryByteComesFromTheNewestLayerCoveringItForRandomChains()
    {
        var random = new Random(11);
        for (var round = 0; round < 500; round++)
        {
            var units = random.Next(1, 60);
            var size = units * Unit - (random.Next(4) == 0 ? random.Next(1, Unit) : 0); // a short last unit now and then
            var layers = Enumerable.Range(0, random.Next(1, 5)).Select(l => RandomLayer(random, units, size, l)).ToList();

            var segments = ChainSweep.Segments(layers, size).ToList();

            // Contiguous, in order, non-empty, from 0 to the size.
            Assert.Equal(0, segments[0].Start);
            Assert.Equal(size, segments[^1].End);
            Assert.All(segments, s => Assert.True(s.End > s.Start));
            Assert.All(segments.Zip(segments.Skip(1)), p => Assert.Equal(p.First.End, p.Second.Start));
            foreach (var s in segments)
            {
                for (var at = s.Start; at < s.End; at++)
                {
                    var (layer, o) = Owner(layers, at);
                    Assert.Equal(layer, s.Layer);
                    Assert.Same(o, s.Object);
                }
            }
        }
    }

    [Fact]
    public void ObjectsInAnyListedOrderAreSweptInVolumeOrder()
    {
        var a = Object("a-00001", 0, 8);
        var b = Object("a-00002", 8, 8);
        var listed = new[] { b, a };

        var ordered = ObjectOrder.ByOffset(listed);

        Assert.Equal([a, b], ordered);
        var alreadySorted = new[] { a, b };
        Assert.Same(alreadySorted, ObjectOrder.ByOffset(alreadySorted));
        Assert.Equal([(0L, 8L, 0), (8L, 16L, 0), (16L, 20L, -1)], ChainSweep.Segments([ordered], 20).Select(s => (s.Start, s.End, s.Layer)));
    }

    private static (int Layer, ObjectDescriptor? Object) Owner(IReadOnlyList<IReadOnlyList<ObjectDescriptor>> layers, long at)
    {
        for (var i = layers.Count - 1; i >= 0; i--)
        {
            if (layers[i].FirstOrDefault(o => o.Offset <= at && at < o.End) is { } o)
            {
                return (i, o);
            }
        }

        return (-1, null);
    }

    /// <summary>Disjoint objects of one to five units with holes between them, in volume order.</summary>
    private static IReadOnlyList<ObjectDescriptor> RandomLayer(Random random, int units, long size, int layer)
    {
        var objects = new List<ObjectDescriptor>();
        var unit = random.Next(3);
        while (unit < units)
        {
            var length = Math.Min(random.Next(1, 6), units - unit);
            var end = Math.Min((long)(unit + length) * Unit, size);
            objects.Add(Object($"l{layer}-{objects.Count + 1:D5}", unit * Unit, end - unit * Unit));
            unit += length + random.Next(0, 4);
        }

        return objects;
    }

    private static ObjectDescriptor Object(string name, long offset, long length) =>
        new(name, offset, length, CompressionAlgorithm.Zlib, new string('0', 32));
}
