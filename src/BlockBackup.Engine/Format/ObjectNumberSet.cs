namespace BlockBackup.Engine.Format;

/// <summary>
/// A set of object numbers per shared name head, as bits in pages of 4096: a backup's objects
/// are numbered 1..N, so half a million of them take 64 KB rather than a hash set's ~25 MB,
/// and the pages keep a hostile name's huge number from costing more than one page.
/// </summary>
internal sealed class ObjectNumberSet : IEnumerable<(string Head, int Number)>
{
    private const int PageBits = 4096;
    private readonly Dictionary<string, Dictionary<int, ulong[]>> _heads = new(StringComparer.Ordinal);

    /// <summary>Adds the number; false when it was there already.</summary>
    public bool Add(string head, int number)
    {
        if (!_heads.TryGetValue(head, out var pages))
        {
            _heads[head] = pages = new Dictionary<int, ulong[]>();
        }

        if (!pages.TryGetValue(number / PageBits, out var page))
        {
            pages[number / PageBits] = page = new ulong[PageBits / 64];
        }

        ref var word = ref page[number % PageBits / 64];
        var bit = 1UL << (number % 64);
        var added = (word & bit) == 0;
        word |= bit;
        return added;
    }

    public bool Contains(string head, int number) =>
        _heads.TryGetValue(head, out var pages) && pages.TryGetValue(number / PageBits, out var page) && (page[number % PageBits / 64] & (1UL << (number % 64))) != 0;

    public IEnumerator<(string Head, int Number)> GetEnumerator()
    {
        foreach (var (head, pages) in _heads)
        {
            foreach (var (index, page) in pages)
            {
                for (var word = 0; word < page.Length; word++)
                {
                    for (var bits = page[word]; bits != 0; bits &= bits - 1)
                    {
                        yield return (head, index * PageBits + word * 64 + System.Numerics.BitOperations.TrailingZeroCount(bits));
                    }
                }
            }
        }
    }

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}
