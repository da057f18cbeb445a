using BlockBackup.Engine.Compression;
using BlockBackup.Engine.Format;
using Xunit;

namespace BlockBackup.Engine.Tests;

public class ObjectListTests
{
    [Fact]
    public void GivesBackEveryDescriptorAsAddedOrPutAtItsPlace()
    {
        var random = new Random(3);
        var originals = new List<ObjectDescriptor>();
        for (var i = 0; i < 5000; i++)
        {
            // Numbered names of two backups, a name that is not numbered, and an MD5 that is not lowercase hex.
            var name = i % 700 == 0 ? $"volume_x_backup_{i}_odd.name" : $"volume_{i % 2}_backup_a-{i + 1:D5}";
            var md5 = i % 1000 == 1 ? "NOT-HEX-" + i : Convert.ToHexString(Guid.NewGuid().ToByteArray()).ToLowerInvariant();
            originals.Add(new ObjectDescriptor(name, (long)random.Next() << 16 | (long)i, random.Next(1, 1 << 23), (CompressionAlgorithm)(i % 4), md5));
        }

        var list = new ObjectList();
        foreach (var o in originals)
        {
            list.Add(o);
        }

        Assert.Equal(originals.Count, list.Count);
        Assert.Equal(originals, list); // record equality: name, offset, length, compression, MD5
        Assert.Equal(originals.Select(o => o.Name), list.Select(o => o.Name));
        Assert.Equal(originals.Select(o => o.Md5), list.Select(o => o.Md5));

        Assert.Equal(originals.Select(o => o.Offset), Enumerable.Range(0, list.Count).Select(list.OffsetAt));
        Assert.Throws<ArgumentOutOfRangeException>(() => list[list.Count]);

        // Put at their places in a shuffled order (as a backup's workers finish), across segments.
        var placed = new ObjectList();
        var order = Enumerable.Range(0, originals.Count).OrderBy(_ => random.Next()).ToList();
        foreach (var i in order.Take(order.Count - 1))
        {
            placed.Put(i, originals[i]);
        }

        Assert.False(placed.IsComplete && placed.Count == originals.Count, "one entry is still missing");
        Assert.Throws<InvalidOperationException>(() => placed.Put(order[0], originals[order[0]])); // never filled twice
        placed.Put(order[^1], originals[order[^1]]);
        Assert.True(placed.IsComplete);
        Assert.Equal(originals, placed);

        // The point of the list is its entry size: a field that breaks the packing shows here.
        var entry = typeof(ObjectList).GetNestedType("Entry", System.Reflection.BindingFlags.NonPublic)!;
        var size = typeof(System.Runtime.CompilerServices.Unsafe).GetMethod(nameof(System.Runtime.CompilerServices.Unsafe.SizeOf))!.MakeGenericMethod(entry).Invoke(null, null);
        Assert.Equal(48, size);
    }
}
