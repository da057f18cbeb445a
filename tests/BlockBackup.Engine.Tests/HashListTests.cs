using BlockBackup.Engine.Format;
using BlockBackup.Engine.Hashing;
using Xunit;

namespace BlockBackup.Engine.Tests;

public class HashListTests
{
    [Fact]
    public void LargeListsSpillToATemporaryFileAndReadBackTheSame()
    {
        using var s = new Scratch();
        var spill = s.PathOf("spill");
        const int count = 10_000;
        var expected = new byte[count * 32];
        new Random(1).NextBytes(expected);
        using (var list = BlockHashList.Create(count, spill, inMemoryLimitBytes: 0))
        {
            Assert.True(list.IsSpilled);
            Assert.Single(Directory.GetFiles(spill));
            list.Set(5000, expected.AsSpan(5000 * 32, 5000 * 32));
            list.Set(0, expected.AsSpan(0, 5000 * 32));
            var back = new byte[count * 32];
            list.Get(0, back);
            Assert.Equal(expected, back);

            var path = s.PathOf("x_sha256file");
            var id = Guid.NewGuid();
            string checksum;
            using (var f = File.Create(path))
            {
                checksum = Sha256File.Write(f, new Sha256FileHeader(id, Guid.NewGuid(), "n", null, "2026-01-01 00:00:00+00:00", 32768), list, default);
            }

            var (header, read) = Sha256File.Read(path, id, checksum, spill, default);
            using (read)
            {
                Assert.Equal(count, read.Count);
                Assert.Equal(32768, header.ChunkSize);
                var again = new byte[count * 32];
                read.Get(0, again);
                Assert.Equal(expected, again);
            }
        }

        Assert.Empty(Directory.GetFiles(spill)); // deleted on close
    }

    [Fact]
    public void OutOfRangeAccessIsRefused()
    {
        using var list = BlockHashList.Create(4);
        Assert.Throws<ArgumentOutOfRangeException>(() => list.Set(3, new byte[64]));
        list.Set(0, new byte[32]);
        Assert.Throws<ArgumentOutOfRangeException>(() => list.Get(0, new byte[64]));
    }
}
