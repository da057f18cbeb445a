namespace BlockBackup.Engine.Operations;

/// <summary>Half-open byte range [Start, End).</summary>
public readonly record struct ByteRange(long Start, long End)
{
    public long Length => End - Start;
}

/// <summary>Operations on sorted, disjoint range lists (linear merges, no per-block state).</summary>
internal static class Ranges
{
    /// <summary><paramref name="a"/> minus <paramref name="b"/>; both sorted and disjoint.</summary>
    public static List<ByteRange> Subtract(IReadOnlyList<ByteRange> a, IReadOnlyList<ByteRange> b)
    {
        var result = new List<ByteRange>();
        var j = 0;
        foreach (var r in a)
        {
            var start = r.Start;
            while (j < b.Count && b[j].End <= start)
            {
                j++;
            }

            var k = j;
            while (start < r.End)
            {
                if (k >= b.Count || b[k].Start >= r.End)
                {
                    result.Add(new ByteRange(start, r.End));
                    break;
                }

                if (b[k].Start > start)
                {
                    result.Add(new ByteRange(start, b[k].Start));
                }

                start = Math.Max(start, b[k].End);
                k++;
            }
        }

        return result;
    }

    /// <summary>Union of two sorted, disjoint lists, adjacent ranges merged.</summary>
    public static List<ByteRange> Union(IReadOnlyList<ByteRange> a, IReadOnlyList<ByteRange> b)
    {
        var all = new List<ByteRange>(a.Count + b.Count);
        int i = 0, j = 0;
        while (i < a.Count || j < b.Count)
        {
            var next = j >= b.Count || (i < a.Count && a[i].Start <= b[j].Start) ? a[i++] : b[j++];
            if (all.Count > 0 && next.Start <= all[^1].End)
            {
                all[^1] = new ByteRange(all[^1].Start, Math.Max(all[^1].End, next.End));
            }
            else
            {
                all.Add(next);
            }
        }

        return all;
    }
}
