using BlockBackup.Engine.Nbd;
using Xunit;

namespace BlockBackup.Engine.Tests;

/// <summary>The export's decoded-object cache: bounded by bytes, least recently used out, and a buffer in use is never handed to another object.</summary>
public class NbdObjectCacheTests
{
    private const int Mib = 1 << 20;

    [Fact]
    public void ItKeepsWithinItsBudgetAndEvictsTheLeastRecentlyUsed()
    {
        var cache = new DecodedObjectCache(3L * Mib);
        var fetches = new List<string>();
        byte[] Fetch(string key)
        {
            using var _ = cache.Get(key, () =>
            {
                fetches.Add(key);
                var b = cache.Rent(Mib);
                b.AsSpan(0, Mib).Fill((byte)key[0]);
                return b;
            });
            return [];
        }

        foreach (var key in new[] { "a", "b", "c", "a", "d", "a", "b" })
        {
            Fetch(key);
            Assert.True(cache.CachedBytes <= 3L * Mib, $"{cache.CachedBytes} bytes cached after {key}");
        }

        // "a" was used again before "d" came, so "b" (least recent) went; "b" is fetched again.
        Assert.Equal(["a", "b", "c", "d", "b"], fetches);
    }

    [Fact]
    public void ABufferHeldByAReaderIsNotReusedAfterEviction()
    {
        var cache = new DecodedObjectCache(Mib);
        DecodedObjectCache.Handle Get(string key) => cache.Get(key, () =>
        {
            var b = cache.Rent(Mib);
            b.AsSpan(0, Mib).Fill((byte)key[0]);
            return b;
        });

        using var held = Get("a");
        foreach (var key in new[] { "b", "c", "d", "e" })
        {
            Get(key).Dispose(); // each evicts the one before; "a" is evicted while still held
        }

        Assert.All(held.Data.AsSpan(0, Mib).ToArray(), b => Assert.Equal((byte)'a', b));
    }
}
