using System.Collections;
using BlockBackup.Engine.Compression;

namespace BlockBackup.Engine.Format;

/// <summary>
/// A backup's objects as 48-byte entries instead of one descriptor object apiece (88 bytes with
/// the reference to it, and half a million objects for the collector to trace in a 4 TiB
/// backup): what a backup writes and what its metadata lists are held this way. The entries live
/// in fixed segments that are never copied: a doubling array held up to twice the entries and,
/// while growing, the old array beside the new one (72 MB at the peak of a 4 TiB backup, where
/// the entries are 25 MB). Descriptors are made when asked for; entries are appended, or put at
/// their place (a backup's object number), by one writer at a time and read by any number.
/// </summary>
public sealed class ObjectList : IReadOnlyList<ObjectDescriptor>
{
    private const int SegmentShift = 12; // 4096 entries, 192 KiB a segment
    private const int SegmentSize = 1 << SegmentShift;

    private struct Entry
    {
        public UInt128 Md5;
        public long Offset;
        public long Length;
        public int Head;
        public int Number;
        public byte Digits;
        public bool Present; // beside Digits, in what was padding: still 48 bytes
        public CompressionAlgorithm Compression;
    }

    private readonly List<string> _heads = new();
    private readonly Dictionary<string, int> _headIndex = new(StringComparer.Ordinal);
    private readonly List<Entry[]> _segments = new();
    private Dictionary<int, string>? _md5Texts; // the rare MD5 that is not 32 lowercase hex digits, by entry
    private int _present;

    /// <summary>One past the last entry appended or put (every index below it is filled once <see cref="IsComplete"/>).</summary>
    public int Count { get; private set; }

    /// <summary>Whether every index below <see cref="Count"/> holds an entry (puts can leave gaps until the last one lands).</summary>
    public bool IsComplete => _present == Count;

    public ObjectDescriptor this[int index]
    {
        get
        {
            ref readonly var e = ref At(index);
            return new ObjectDescriptor(_heads[e.Head], e.Number, e.Digits, e.Offset, e.Length, e.Compression, e.Md5, _md5Texts?.GetValueOrDefault(index));
        }
    }

    /// <summary>The offset of entry <paramref name="index"/>, without making its descriptor.</summary>
    public long OffsetAt(int index) => At(index).Offset;

    public void Add(ObjectDescriptor o) => Put(Count, o);

    /// <summary>Puts <paramref name="o"/> at <paramref name="index"/> (a backup's objects, by number, as its workers finish them out of order).</summary>
    public void Put(int index, ObjectDescriptor o)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        var (head, number, digits, md5, md5Text) = o.Parts;
        if (!_headIndex.TryGetValue(head, out var h))
        {
            h = _heads.Count;
            _heads.Add(head);
            _headIndex.Add(head, h);
        }

        while (_segments.Count <= index >> SegmentShift)
        {
            _segments.Add(new Entry[SegmentSize]);
        }

        ref var slot = ref _segments[index >> SegmentShift][index & (SegmentSize - 1)];
        if (slot.Present)
        {
            throw new InvalidOperationException($"Object list entry {index} is already filled ({_heads[slot.Head]}).");
        }

        if (md5Text is not null)
        {
            (_md5Texts ??= new())[index] = md5Text;
        }

        slot = new Entry { Md5 = md5, Offset = o.Offset, Length = o.Length, Head = h, Number = number, Digits = digits, Compression = o.Compression, Present = true };
        _present++;
        Count = Math.Max(Count, index + 1);
    }

    private ref readonly Entry At(int index)
    {
        if ((uint)index >= (uint)Count)
        {
            throw new ArgumentOutOfRangeException(nameof(index));
        }

        ref readonly var e = ref _segments[index >> SegmentShift][index & (SegmentSize - 1)];
        if (!e.Present)
        {
            throw new InvalidOperationException($"Object list entry {index} was never filled.");
        }

        return ref e;
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
