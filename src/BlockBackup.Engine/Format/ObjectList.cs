using System.Collections;
using BlockBackup.Engine.Compression;

namespace BlockBackup.Engine.Format;

/// <summary>
/// A backup's objects as one array of 48-byte entries instead of one descriptor object apiece
/// (88 bytes with the reference to it, and half a million objects for the collector to trace in a
/// 4 TiB backup): what a backup writes and what its metadata lists are held this way. Descriptors
/// are made when asked for; entries may be appended by one writer at a time, read by any number.
/// </summary>
public sealed class ObjectList : IReadOnlyList<ObjectDescriptor>
{
    private struct Entry
    {
        public UInt128 Md5;
        public long Offset;
        public long Length;
        public int Head;
        public int Number;
        public byte Digits;
        public CompressionAlgorithm Compression;
    }

    private readonly List<string> _heads = new();
    private readonly Dictionary<string, int> _headIndex = new(StringComparer.Ordinal);
    private Dictionary<int, string>? _md5Texts; // the rare MD5 that is not 32 lowercase hex digits, by entry
    private Entry[] _entries;

    public ObjectList(int capacity = 16) => _entries = new Entry[Math.Max(1, capacity)];

    public int Count { get; private set; }

    public ObjectDescriptor this[int index]
    {
        get
        {
            if ((uint)index >= (uint)Count)
            {
                throw new ArgumentOutOfRangeException(nameof(index));
            }

            ref readonly var e = ref _entries[index];
            return new ObjectDescriptor(_heads[e.Head], e.Number, e.Digits, e.Offset, e.Length, e.Compression, e.Md5, _md5Texts?.GetValueOrDefault(index));
        }
    }

    /// <summary>The offset of entry <paramref name="index"/>, without making its descriptor.</summary>
    public long OffsetAt(int index) => (uint)index < (uint)Count ? _entries[index].Offset : throw new ArgumentOutOfRangeException(nameof(index));

    public void Add(ObjectDescriptor o)
    {
        var (head, number, digits, md5, md5Text) = o.Parts;
        if (!_headIndex.TryGetValue(head, out var h))
        {
            h = _heads.Count;
            _heads.Add(head);
            _headIndex.Add(head, h);
        }

        if (Count == _entries.Length)
        {
            Array.Resize(ref _entries, _entries.Length * 2);
        }

        if (md5Text is not null)
        {
            (_md5Texts ??= new())[Count] = md5Text;
        }

        _entries[Count++] = new Entry { Md5 = md5, Offset = o.Offset, Length = o.Length, Head = h, Number = number, Digits = digits, Compression = o.Compression };
    }

    /// <summary>
    /// Puts the entries in offset order, in place (the rare MD5 text moves with its entry).
    /// Offsets must be distinct, as the objects of one backup's are.
    /// </summary>
    public void SortByOffset()
    {
        if (_md5Texts is { Count: > 0 } texts)
        {
            // Rare (only hand-made descriptors carry such a text): keyed by offset across the sort.
            var byOffset = texts.ToDictionary(t => _entries[t.Key].Offset, t => t.Value);
            Array.Sort(_entries, 0, Count, Comparer<Entry>.Create(static (a, b) => a.Offset.CompareTo(b.Offset)));
            _md5Texts = new();
            for (var i = 0; i < Count; i++)
            {
                if (byOffset.TryGetValue(_entries[i].Offset, out var text))
                {
                    _md5Texts[i] = text;
                }
            }

            return;
        }

        Array.Sort(_entries, 0, Count, Comparer<Entry>.Create(static (a, b) => a.Offset.CompareTo(b.Offset)));
    }

    public IEnumerator<ObjectDescriptor> GetEnumerator()
    {
        for (var i = 0; i < Count; i++)
        {
            yield return this[i];
        }
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
