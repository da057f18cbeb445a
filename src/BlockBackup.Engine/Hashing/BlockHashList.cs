using Microsoft.Win32.SafeHandles;

namespace BlockBackup.Engine.Hashing;

/// <summary>
/// The SHA-256 of every hash block of a volume, in binary (32 bytes a block). A 1 TiB volume
/// has 32 Mi blocks, 1 GiB of hashes, so beyond a threshold the list lives in a temporary file
/// (deleted on close) and is read and written in ranges: peak memory stays bounded whatever the
/// volume size.
/// </summary>
public sealed class BlockHashList : IDisposable
{
    public const int HashSize = 32;

    /// <summary>Up to this many bytes of hashes (a 48 GiB volume) are kept in memory.</summary>
    public static long InMemoryLimitBytes { get; set; } = 48L << 20;

    private readonly byte[]? _memory;
    private readonly SafeFileHandle? _file;
    private readonly FileStream? _fileStream;

    private BlockHashList(long capacity, string? spillDirectory, long inMemoryLimitBytes)
    {
        Capacity = capacity;
        if (capacity * HashSize <= inMemoryLimitBytes)
        {
            _memory = new byte[capacity * HashSize];
        }
        else
        {
            var dir = spillDirectory ?? Path.GetTempPath();
            Directory.CreateDirectory(dir);
            var path = Path.Combine(dir, $".blockbackup-hashes-{Guid.NewGuid():N}.tmp");
            _fileStream = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.DeleteOnClose);
            _fileStream.SetLength(capacity * HashSize);
            _file = _fileStream.SafeFileHandle;
        }
    }

    public static BlockHashList Create(long capacity, string? spillDirectory = null, long? inMemoryLimitBytes = null) =>
        new(capacity, spillDirectory, inMemoryLimitBytes ?? InMemoryLimitBytes);

    /// <summary>How many hashes the list can hold.</summary>
    public long Capacity { get; }

    /// <summary>How many hashes were appended or the highest index set plus one.</summary>
    public long Count { get; private set; }

    public bool IsSpilled => _file is not null;

    public void Set(long index, ReadOnlySpan<byte> hashes)
    {
        if (hashes.Length % HashSize != 0)
        {
            throw new ArgumentException("Hashes must be whole 32-byte values.", nameof(hashes));
        }

        var n = hashes.Length / HashSize;
        if (index < 0 || index + n > Capacity)
        {
            throw new ArgumentOutOfRangeException(nameof(index), $"Hash index {index}+{n} is outside the list of {Capacity}.");
        }

        if (_memory is not null)
        {
            hashes.CopyTo(_memory.AsSpan(checked((int)(index * HashSize))));
        }
        else
        {
            RandomAccess.Write(_file!, hashes, index * HashSize);
        }

        lock (this)
        {
            Count = Math.Max(Count, index + n);
        }
    }

    public void Append(ReadOnlySpan<byte> hashes) => Set(Count, hashes);

    /// <summary>Copies hashes [index, index + destination.Length/32) into destination.</summary>
    public void Get(long index, Span<byte> destination)
    {
        var n = destination.Length / HashSize;
        if (index < 0 || index + n > Count)
        {
            throw new ArgumentOutOfRangeException(nameof(index), $"Hash index {index}+{n} is outside the list of {Count}.");
        }

        if (_memory is not null)
        {
            _memory.AsSpan(checked((int)(index * HashSize)), destination.Length).CopyTo(destination);
        }
        else
        {
            var read = 0;
            while (read < destination.Length)
            {
                var r = RandomAccess.Read(_file!, destination[read..], index * HashSize + read);
                if (r == 0)
                {
                    throw new EndOfStreamException("The spilled hash list ended early.");
                }

                read += r;
            }
        }
    }

    public void Dispose() => _fileStream?.Dispose();
}

/// <summary>Constants of all-zero blocks: their hashes are known without hashing them.</summary>
public static class ZeroBlock
{
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<int, byte[]> Hashes = new();

    /// <summary>SHA-256 of <paramref name="length"/> zero bytes (cached; a volume has at most two lengths).</summary>
    public static ReadOnlySpan<byte> Sha256(int length) =>
        Hashes.GetOrAdd(length, static l => System.Security.Cryptography.SHA256.HashData(new byte[l]));

    public static bool IsZero(ReadOnlySpan<byte> data) => data.IndexOfAnyExcept((byte)0) < 0;

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<long, UInt128> ObjectMd5s = new();

    private static UInt128 ObjectMd5Value(long length) =>
        ObjectMd5s.GetOrAdd(length, static n => System.Buffers.Binary.BinaryPrimitives.ReadUInt128BigEndian(System.Security.Cryptography.MD5.HashData(new byte[n])));

    /// <summary>
    /// The MD5 (lowercase hex, as Cinder's metadata records it) of an object of
    /// <paramref name="length"/> zero bytes, computed once per length: MD5 has no shortcut for
    /// zeros, and a sparse 1 TiB volume is mostly such objects.
    /// </summary>
    public static string ObjectMd5(long length) => ObjectMd5Value(length).ToString("x32", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// True when the metadata says the object holds zeros only (its MD5 is that of as many zeros);
    /// compared as numbers: a 4 TiB restore asks this of half a million objects.
    /// </summary>
    public static bool IsZeroObject(Format.ObjectDescriptor o) => o.Length <= (256L << 20) && o.Md5Is(ObjectMd5Value(o.Length));
}
