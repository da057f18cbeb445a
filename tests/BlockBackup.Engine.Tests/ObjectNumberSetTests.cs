using BlockBackup.Engine.Format;
using Xunit;

namespace BlockBackup.Engine.Tests;

public class ObjectNumberSetTests
{
    [Fact]
    public void HoldsExactlyWhatAHashSetWouldWhateverTheNumbers()
    {
        var random = new Random(5);
        var set = new ObjectNumberSet();
        var reference = new HashSet<(string, int)>();
        string[] heads = ["volume_a_backup_1", "volume_a_backup_2"];
        for (var i = 0; i < 20_000; i++)
        {
            // Dense runs from 1 as backups number their objects, and a few hostile huge numbers.
            var number = i % 50 == 0 ? random.Next(0, 999_999_999) : random.Next(0, 30_000);
            var head = heads[random.Next(2)];
            Assert.Equal(reference.Add((head, number)), set.Add(head, number));
        }

        Assert.Equal(reference.OrderBy(k => k).ToList(), set.OrderBy(k => k).ToList());
        for (var number = 0; number < 40_000; number++)
        {
            Assert.Equal(reference.Contains((heads[0], number)), set.Contains(heads[0], number));
        }

        Assert.False(set.Contains("volume_other", 1));
    }
}
