namespace BlockBackup.Engine.Nbd;

/// <summary>
/// Decompressed objects kept for the export's readers, least recently used first out, within a
/// budget in bytes: a client reading a volume sequentially asks for an 8 MiB object in dozens of
/// small reads, which must not decompress it dozens of times, yet a 1 TiB export must not keep
/// what it has read. Concurrent readers of one object share one fetch.
/// </summary>
internal sealed class DecodedObjectCache(long budgetBytes)
{
    private readonly object _gate = new();
    private readonly Dictionary<string, LinkedListNode<(string Key, byte[] Data)>> _entries = new(StringComparer.Ordinal);
    private readonly LinkedList<(string Key, byte[] Data)> _recency = new();
    private readonly Dictionary<string, Lazy<byte[]>> _fetching = new(StringComparer.Ordinal);
    private long _bytes;

    public long BudgetBytes => budgetBytes;

    /// <summary>Bytes held now (never more than the budget).</summary>
    public long CachedBytes
    {
        get
        {
            lock (_gate)
            {
                return _bytes;
            }
        }
    }

    /// <summary>The object under <paramref name="key"/>, from the cache or by <paramref name="fetch"/> (once, however many ask at the same time).</summary>
    public byte[] Get(string key, Func<byte[]> fetch)
    {
        Lazy<byte[]> pending;
        lock (_gate)
        {
            if (_entries.TryGetValue(key, out var node))
            {
                _recency.Remove(node);
                _recency.AddFirst(node);
                return node.Value.Data;
            }

            if (!_fetching.TryGetValue(key, out pending!))
            {
                // A failed fetch is not remembered: the next read tries again (a store may recover).
                pending = new Lazy<byte[]>(fetch, LazyThreadSafetyMode.ExecutionAndPublication);
                _fetching[key] = pending;
            }
        }

        try
        {
            var data = pending.Value;
            lock (_gate)
            {
                if (_fetching.Remove(key) && data.Length <= budgetBytes && !_entries.ContainsKey(key))
                {
                    _entries[key] = _recency.AddFirst((key, data));
                    _bytes += data.Length;
                    while (_bytes > budgetBytes && _recency.Last is { } oldest)
                    {
                        _recency.RemoveLast();
                        _entries.Remove(oldest.Value.Key);
                        _bytes -= oldest.Value.Data.Length;
                    }
                }
            }

            return data;
        }
        catch
        {
            lock (_gate)
            {
                if (_fetching.TryGetValue(key, out var current) && ReferenceEquals(current, pending))
                {
                    _fetching.Remove(key);
                }
            }

            throw;
        }
    }
}
