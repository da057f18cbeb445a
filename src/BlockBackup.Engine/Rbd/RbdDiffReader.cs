using System.Buffers.Binary;
using System.Text;
using BlockBackup.Engine.Errors;

namespace BlockBackup.Engine.Rbd;

public enum RbdDiffRecordKind
{
    /// <summary>'w': updated data follows (read it with <see cref="RbdDiffReader.ReadData"/>).</summary>
    Data,
    /// <summary>'z': the range reads as zeros (zeroed, discarded or never written).</summary>
    Zero,
}

public readonly record struct RbdDiffRecord(RbdDiffRecordKind Kind, long Offset, long Length)
{
    public long End => Offset + Length;
}

/// <summary>
/// Streaming reader of the <c>rbd export-diff</c> format: v1 (what export-diff writes and
/// import-diff reads) and v2 (inside <c>rbd export --export-format 2</c>). All integers are
/// little-endian. Damaged input (banner, unknown v1 tag, truncation, extents beyond the image
/// size) fails with the byte position in the stream. Data is never buffered beyond the caller's span.
/// </summary>
public sealed class RbdDiffReader : IRbdDiffSource
{
    public const string BannerV1 = "rbd diff v1\n";
    public const string BannerV2 = "rbd diff v2\n";
    private const int MaxNameLength = 4096;

    private readonly Stream _stream;
    private readonly string _source;
    private readonly byte[] _scratch = new byte[16];
    private long _position;
    private long _dataLeft;
    private RbdDiffRecord? _pending;

    /// <summary>Reads the banner and every metadata record up to the first data record.</summary>
    public RbdDiffReader(Stream stream, string source)
    {
        _stream = stream;
        _source = source;
        var banner = new byte[BannerV1.Length];
        var got = ReadAtMost(banner);
        var text = Encoding.ASCII.GetString(banner, 0, got);
        if (got < banner.Length && BannerV1.StartsWith(text, StringComparison.Ordinal))
        {
            throw Damaged(0, $"the stream is truncated in its banner ({got} bytes)");
        }

        Version = text switch
        {
            BannerV1 => 1,
            BannerV2 => 2,
            _ => throw Damaged(0, $"the stream does not start with an export-diff banner (\"rbd diff v1\" or \"v2\"); it starts with \"{Printable(text)}\""),
        };
        ReadMetadata();
    }

    public int Version { get; }
    public string? FromSnapshot { get; private set; }
    public string? ToSnapshot { get; private set; }
    public long? ImageSize { get; private set; }
    public bool? IsProtected { get; private set; }

    /// <summary>Bytes consumed from the stream so far.</summary>
    public long Position => _position;

    /// <summary>The next data or zero record, or null at the end record. Unread data of the previous record is skipped.</summary>
    public RbdDiffRecord? Next()
    {
        if (_ended)
        {
            return null;
        }

        if (_dataLeft > 0)
        {
            Skip(_dataLeft);
            _dataLeft = 0;
        }

        if (_pending is { } pending)
        {
            _pending = null;
            return Begin(pending);
        }

        while (true)
        {
            var at = _position;
            var tag = ReadByte();
            switch ((char)tag)
            {
                case 'e':
                    _ended = true;
                    return null;
                case 'w':
                case 'z':
                    return Begin(ReadExtent((char)tag, at));
                case 'f':
                case 't':
                case 's':
                case 'p':
                    throw Damaged(at, $"metadata record '{(char)tag}' after data records");
                default:
                    SkipUnknown(tag, at);
                    break;
            }
        }
    }

    /// <summary>Reads the current data record's bytes (exactly destination.Length, at most what is left).</summary>
    public void ReadData(Span<byte> destination)
    {
        if (destination.Length > _dataLeft)
        {
            throw new InvalidOperationException($"Only {_dataLeft} bytes of the current record are left.");
        }

        ReadExactly(destination);
        _dataLeft -= destination.Length;
    }

    private RbdDiffRecord Begin(RbdDiffRecord record)
    {
        _dataLeft = record.Kind == RbdDiffRecordKind.Data ? record.Length : 0;
        return record;
    }

    private void ReadMetadata()
    {
        while (true)
        {
            var at = _position;
            var tag = ReadByte();
            switch ((char)tag)
            {
                case 'f':
                    FromSnapshot = ReadName(at, "from-snapshot");
                    break;
                case 't':
                    ToSnapshot = ReadName(at, "to-snapshot");
                    break;
                case 's':
                    if (Version == 2)
                    {
                        ExpectLength(at, 8);
                    }

                    ImageSize = ReadInt64(at, "image size");
                    break;
                case 'p' when Version == 2:
                    // Ceph 16 announces 8 bytes but writes 1 (a Pacific bug): read exactly one.
                    ReadInt64(at, "record length");
                    IsProtected = ReadByte() != 0;
                    break;
                case 'w':
                case 'z':
                    _pending = ReadExtent((char)tag, at);
                    return;
                case 'e':
                    _pending = null;
                    _ended = true;
                    return;
                default:
                    SkipUnknown(tag, at);
                    break;
            }
        }
    }

    private bool _ended;

    private RbdDiffRecord ReadExtent(char tag, long at)
    {
        if (Version == 2)
        {
            var payload = ReadInt64(at, "record length");
            if (payload < 16)
            {
                throw Damaged(at, $"record '{tag}' announces {payload} bytes, fewer than its offset and length");
            }
        }

        var offset = ReadInt64(at, "offset");
        var length = ReadInt64(at, "length");
        if (offset < 0 || length < 0 || offset > long.MaxValue - length)
        {
            throw Damaged(at, $"record '{tag}' has an invalid extent (offset {offset}, length {length})");
        }

        if (ImageSize is null)
        {
            throw Damaged(at, $"record '{tag}' comes before the image size record 's'");
        }

        if (offset + length > ImageSize)
        {
            throw Damaged(at, $"record '{tag}' [{offset}, {offset + length}) extends beyond the image size {ImageSize}");
        }

        return new RbdDiffRecord(tag == 'w' ? RbdDiffRecordKind.Data : RbdDiffRecordKind.Zero, offset, length);
    }

    private void SkipUnknown(byte tag, long at)
    {
        if (Version == 1)
        {
            throw Damaged(at, $"unknown record tag 0x{tag:x2} ('{Printable(((char)tag).ToString())}'); v1 records carry no length, so it cannot be skipped");
        }

        var length = ReadInt64(at, "record length");
        if (length < 0)
        {
            throw Damaged(at, $"record 0x{tag:x2} has a negative length");
        }

        Skip(length);
    }

    private string ReadName(long at, string what)
    {
        if (Version == 2)
        {
            ReadInt64(at, "record length");
        }

        Span<byte> lengthBytes = stackalloc byte[4];
        ReadExactly(lengthBytes, at, what);
        var length = BinaryPrimitives.ReadUInt32LittleEndian(lengthBytes);
        if (length > MaxNameLength)
        {
            throw Damaged(at, $"the {what} name is {length} bytes long (at most {MaxNameLength})");
        }

        var name = new byte[length];
        ReadExactly(name, at, what);
        return Encoding.UTF8.GetString(name);
    }

    private void ExpectLength(long at, long expected)
    {
        var length = ReadInt64(at, "record length");
        if (length != expected)
        {
            throw Damaged(at, $"record announces {length} bytes, expected {expected}");
        }
    }

    private long ReadInt64(long at, string what)
    {
        ReadExactly(_scratch.AsSpan(0, 8), at, what);
        return BinaryPrimitives.ReadInt64LittleEndian(_scratch);
    }

    private byte ReadByte()
    {
        var b = _stream.ReadByte();
        if (b < 0)
        {
            throw Damaged(_position, "the stream ends without its end record 'e' (truncated)");
        }

        _position++;
        return (byte)b;
    }

    private void ReadExactly(Span<byte> buffer, long? recordAt = null, string? what = null)
    {
        var got = ReadAtMost(buffer);
        if (got < buffer.Length)
        {
            throw Damaged(recordAt ?? _position, $"the stream is truncated{(what is null ? "" : " in the " + what)} ({got} of {buffer.Length} bytes)");
        }
    }

    private int ReadAtMost(Span<byte> buffer)
    {
        var total = _stream.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);
        _position += total;
        return total;
    }

    private byte[]? _skipBuffer;

    /// <summary>Reads and discards (a pipe cannot seek), so truncation is still detected.</summary>
    private void Skip(long count)
    {
        var buffer = _skipBuffer ??= new byte[1 << 20];
        while (count > 0)
        {
            var n = (int)Math.Min(count, buffer.Length);
            ReadExactly(buffer.AsSpan(0, n));
            count -= n;
        }
    }

    private BackupException Damaged(long at, string what) =>
        new(BackupErrorKind.InvalidData, "InvalidRbdDiff", $"RBD diff stream from {_source} is damaged at byte {at}: {what}.", _source);

    private static string Printable(string s) => new(s.Select(c => c is >= ' ' and < (char)127 ? c : '?').ToArray());
}
