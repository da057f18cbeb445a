namespace BlockBackup.Engine.Nbd;

/// <summary>
/// Decompressed objects kept for the export's readers, least recently used first out, within a
/// budget in bytes: a client reading a volume sequentially asks for an 8 MiB object in dozens of
/// small reads, which must not decompress it dozens of times, yet a 1 TiB export must not keep
/// what it has read. Concurrent readers of one object share one fetch. Buffers are reference
/// counted and reused once evicted and released: a fresh 8 MiB array per object read is
/// large-object-heap garbage the GC lets pile up (measured: 1.4 GB peak RSS over a 2 GiB copy).
/// </summary>
internal sealed class DecodedObjectCache(long budgetBytes)
{
    /// <summary>Free buffers kept for reuse beyond the cache itself.</summary>
    private const int SpareBuffers = 4;

    private readonly object _gate = new();
    private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly LinkedList<Entry> _recency = new();
    private readonly List<byte[]> _spare = [];
    private long _bytes;

    public long BudgetBytes => budgetBytes;

    /// <summary>Bytes held by cached objects now.</summary>
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

    /// <summary>
    /// The object under <paramref name="key"/>, from the cache or by <paramref name="fetch"/>
    /// (once, however many ask at the same time), which fills a buffer it gets from
    /// <see cref="Rent"/>. Dispose the result when done with its bytes.
    /// </summary>
    public Handle Get(string key, Func<byte[]> fetch)
    {
        Entry entry;
        lock (_gate)
        {
            if (!_entries.TryGetValue(key, out entry!))
            {
                entry = new Entry(key, fetch);
                _entries[key] = entry;
            }

            entry.Refs++; // before the fetch completes: eviction never recycles a buffer in use
            if (entry.Node is { } node)
            {
                _recency.Remove(node);
                _recency.AddFirst(node);
            }
        }

        byte[] data;
        try
        {
            data = entry.Load.Value;
        }
        catch
        {
            lock (_gate)
            {
                entry.Refs--;
                // A failed fetch is not remembered: the next read tries again (a store may recover).
                if (_entries.TryGetValue(key, out var current) && ReferenceEquals(current, entry))
                {
                    _entries.Remove(key);
                }
            }

            throw;
        }

        lock (_gate)
        {
            if (entry.Node is null && !entry.Evicted)
            {
                if (data.LongLength > budgetBytes)
                {
                    Evict(entry); // too large to keep: recycled when its readers are done
                }
                else
                {
                    entry.Node = _recency.AddFirst(entry);
                    _bytes += data.LongLength;
                    while (_bytes > budgetBytes && _recency.Last is { } oldest && !ReferenceEquals(oldest.Value, entry))
                    {
                        Evict(oldest.Value);
                    }
                }
            }
        }

        return new Handle(this, entry, data);
    }

    /// <summary>A buffer of at least <paramref name="length"/> bytes, reused when one is free.</summary>
    public byte[] Rent(long length)
    {
        lock (_gate)
        {
            var i = _spare.FindIndex(b => b.LongLength >= length && b.LongLength <= 2 * length);
            if (i >= 0)
            {
                var buffer = _spare[i];
                _spare.RemoveAt(i);
                return buffer;
            }
        }

        return new byte[length];
    }

    private void Release(Entry entry, byte[] data)
    {
        lock (_gate)
        {
            if (--entry.Refs == 0 && entry.Evicted)
            {
                Recycle(data);
            }
        }
    }

    // Under _gate.
    private void Evict(Entry entry)
    {
        if (entry.Node is { } node)
        {
            _recency.Remove(node);
            entry.Node = null;
            _bytes -= entry.Load.Value.LongLength;
        }

        entry.Evicted = true;
        if (_entries.TryGetValue(entry.Key, out var current) && ReferenceEquals(current, entry))
        {
            _entries.Remove(entry.Key);
        }

        if (entry.Refs == 0)
        {
            Recycle(entry.Load.Value);
        }
    }

    // Under _gate.
    private void Recycle(byte[] data)
    {
        if (_spare.Count < SpareBuffers)
        {
            _spare.Add(data);
        }
    }

    internal sealed class Entry(string key, Func<byte[]> fetch)
    {
        public string Key { get; } = key;
        public Lazy<byte[]> Load { get; } = new(fetch, LazyThreadSafetyMode.ExecutionAndPublication);
        public int Refs { get; set; }
        public bool Evicted { get; set; }
        public LinkedListNode<Entry>? Node { get; set; }
    }

    /// <summary>A decoded object in use; its buffer may be longer than the object.</summary>
    public readonly struct Handle : IDisposable
    {
        private readonly DecodedObjectCache _cache;
        private readonly Entry _entry;

        internal Handle(DecodedObjectCache cache, Entry entry, byte[] data)
        {
            _cache = cache;
            _entry = entry;
            Data = data;
        }

        public byte[] Data { get; }

        public void Dispose() => _cache?.Release(_entry, Data); // default: a zero stretch, nothing held
    }
}
