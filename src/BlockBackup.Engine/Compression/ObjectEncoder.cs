using System.Buffers.Binary;
using System.IO.Compression;
using ICSharpCode.SharpZipLib.BZip2;

namespace BlockBackup.Engine.Compression;

/// <summary>
/// Compresses one object as Cinder would store it: the configured algorithm, or raw bytes
/// labelled "none" when compression does not make it smaller. Thread-safe (no shared state).
/// </summary>
public sealed class ObjectEncoder
{
    /// <summary>zlib is emitted segment by segment; each segment is deflated or stored on its own.</summary>
    internal const int ZlibSegment = 128 * 1024;

    /// <summary>
    /// Input is handed to a compressor at most this much at a time, with the cancellation token
    /// checked in between: even the slowest codec at its highest level on its worst data (zstd -19
    /// on log text: 1.2 MiB/s; bz2 -9 on repetitive text: 3.7 MiB/s) gets through a slice in a
    /// quarter of a second, so a stop never waits for a whole
    /// object (8 MiB by default, up to 256 MiB).
    /// </summary>
    internal const int CancellationSlice = 256 * 1024;

    private readonly CompressionLevel _zlibLevel;

    public ObjectEncoder(CompressionAlgorithm algorithm, int? level = null)
    {
        Algorithm = algorithm;
        // .NET exposes three zlib levels; Cinder reads any of them.
        (Level, _zlibLevel) = algorithm switch
        {
            CompressionAlgorithm.Zlib => (level ?? 1) switch
            {
                <= 3 => ((int?)1, CompressionLevel.Fastest),
                <= 7 => ((int?)6, CompressionLevel.Optimal),
                _ => ((int?)9, CompressionLevel.SmallestSize),
            },
            CompressionAlgorithm.Zstd => ((int?)Math.Clamp(level ?? 1, -7, 19), CompressionLevel.Fastest),
            // Cinder calls bz2.compress(data) without a level, i.e. 9 (900 kB blocks); so do we, whatever was asked.
            CompressionAlgorithm.Bz2 => ((int?)9, CompressionLevel.Fastest),
            _ => ((int?)null, CompressionLevel.Fastest),
        };
    }

    public CompressionAlgorithm Algorithm { get; }

    /// <summary>The effective level recorded in the backup (zlib maps to 1, 6 or 9).</summary>
    public int? Level { get; }

    /// <summary>
    /// Encodes <paramref name="data"/> into <paramref name="output"/> (at least data.Length long).
    /// Returns the algorithm actually used and the encoded length; for None the caller stores
    /// <paramref name="data"/> itself. Throws <see cref="OperationCanceledException"/> within
    /// one <see cref="CancellationSlice"/> of <paramref name="cancellationToken"/> being cancelled.
    /// </summary>
    public (CompressionAlgorithm Used, int Length) Encode(ReadOnlySpan<byte> data, byte[] output, CancellationToken cancellationToken = default)
    {
        if (data.IsEmpty || Algorithm == CompressionAlgorithm.None)
        {
            return (CompressionAlgorithm.None, data.Length);
        }

        var n = Algorithm switch
        {
            CompressionAlgorithm.Zlib => EncodeZlib(data, output, cancellationToken),
            // High zstd levels spend seconds on random data only to store it raw (level 19: 2.7 s an object).
            CompressionAlgorithm.Zstd => LooksIncompressibleThroughout(data) ? -1 : Zstd.Compress(data, output.AsSpan(0, data.Length - 1), Level!.Value, CancellationSlice, cancellationToken),
            CompressionAlgorithm.Bz2 => EncodeBz2(data, output, Level!.Value, cancellationToken),
            _ => -1,
        };
        return n < 0 || n >= data.Length ? (CompressionAlgorithm.None, data.Length) : (Algorithm, n);
    }

    /// <summary>
    /// A standard zlib stream (RFC 1950) built from independent segments: segments that look
    /// incompressible become stored deflate blocks (no compressor time spent on random data),
    /// the rest are deflated and sync-flushed so they concatenate. Any zlib reader, Cinder's
    /// included, reads it as one stream.
    /// </summary>
    private int EncodeZlib(ReadOnlySpan<byte> data, byte[] output, CancellationToken cancellationToken)
    {
        var capacity = data.Length - 1;
        if (capacity < 16)
        {
            return -1;
        }

        var sink = new BoundedBufferStream(output, 0, capacity);
        try
        {
            sink.Write([0x78, 0x01]);
            // Consecutive segments of one kind form a run: zero runs and compressible runs are each
            // deflated as one stream (zero runs are the same bytes for a given length, so they are
            // deflated once at level 6 and reused), and
            // incompressible runs become stored blocks.
            var segments = (data.Length + ZlibSegment - 1) / ZlibSegment;
            Span<SegmentKind> kinds = segments <= 4096 ? stackalloc SegmentKind[segments] : new SegmentKind[segments];
            for (var i = 0; i < segments; i++)
            {
                kinds[i] = Classify(data.Slice(i * ZlibSegment, Math.Min(ZlibSegment, data.Length - i * ZlibSegment)));
            }

            for (var first = 0; first < segments;)
            {
                var last = first + 1;
                while (last < segments && kinds[last] == kinds[first])
                {
                    last++;
                }

                var run = data[(first * ZlibSegment)..Math.Min(last * ZlibSegment, data.Length)];
                if (kinds[first] == SegmentKind.Incompressible)
                {
                    WriteStoredBlocks(sink, run);
                }
                else if (kinds[first] == SegmentKind.Zero)
                {
                    sink.Write(DeflatedZeros(run.Length));
                }
                else
                {
                    Deflate(sink, run, _zlibLevel, cancellationToken);
                }

                first = last;
            }

            // Empty final stored block, then the Adler-32 of everything, big-endian.
            sink.Write([0x01, 0x00, 0x00, 0xFF, 0xFF]);
            Span<byte> trailer = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(trailer, Adler32.Update(1, data));
            sink.Write(trailer);
            return sink.Written;
        }
        catch (BoundedBufferStream.FullException)
        {
            return -1;
        }
    }

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<int, byte[]> ZeroRuns = new();

    /// <summary>A sync-flushed deflate run of n zeros is always the same bytes: compute it once per length.</summary>
    private static byte[] DeflatedZeros(int length) => ZeroRuns.GetOrAdd(length, static n =>
    {
        var output = new byte[Math.Max(4096, n / 64)];
        var sink = new BoundedBufferStream(output, 0, output.Length);
        Deflate(sink, new byte[n], CompressionLevel.Optimal, CancellationToken.None);
        return output[..sink.Written];
    });

    private enum SegmentKind
    {
        Zero,
        Compressible,
        Incompressible,
    }

    private static SegmentKind Classify(ReadOnlySpan<byte> segment) =>
        Hashing.ZeroBlock.IsZero(segment) ? SegmentKind.Zero
        : Entropy.LooksIncompressible(segment) ? SegmentKind.Incompressible
        : SegmentKind.Compressible;

    /// <summary>Raw deflate of <paramref name="run"/>, sync-flushed and without a final block, so more blocks can follow.</summary>
    private static void Deflate(BoundedBufferStream sink, ReadOnlySpan<byte> run, CompressionLevel level, CancellationToken cancellationToken)
    {
        var deflate = new DeflateStream(sink, level, leaveOpen: true);
        try
        {
            for (var pos = 0; pos < run.Length; pos += CancellationSlice)
            {
                cancellationToken.ThrowIfCancellationRequested();
                deflate.Write(run.Slice(pos, Math.Min(CancellationSlice, run.Length - pos)));
            }

            deflate.Flush(); // Z_SYNC_FLUSH: byte-aligned, no final block
        }
        finally
        {
            sink.Discarding = true; // the final block Dispose appends is not wanted
            deflate.Dispose();
            sink.Discarding = false;
        }
    }

    private static void WriteStoredBlocks(BoundedBufferStream sink, ReadOnlySpan<byte> segment)
    {
        Span<byte> header = stackalloc byte[5];
        while (!segment.IsEmpty)
        {
            var n = Math.Min(segment.Length, 65535);
            header[0] = 0x00; // BFINAL=0, BTYPE=00 (stored); byte-aligned after a sync flush
            BinaryPrimitives.WriteUInt16LittleEndian(header[1..], (ushort)n);
            BinaryPrimitives.WriteUInt16LittleEndian(header[3..], (ushort)~n);
            sink.Write(header);
            sink.Write(segment[..n]);
            segment = segment[n..];
        }
    }

    /// <summary>
    /// The managed encoder's input granularity: it sorts a block only once 900 kB have been
    /// written, so smaller writes cannot make it stop sooner; this only bounds the copy between checks.
    /// </summary>
    private const int ManagedBz2Slice = 64 * 1024;

    private static int EncodeBz2(ReadOnlySpan<byte> data, byte[] output, int level, CancellationToken cancellationToken)
    {
        if (LooksIncompressibleThroughout(data))
        {
            return -1;
        }

        if (Bz2.IsAvailable)
        {
            return Bz2.Compress(data, output.AsSpan(0, data.Length - 1), level, CancellationSlice, cancellationToken);
        }

        // No libbz2 on this machine (Windows without bz2.dll): SharpZipLib writes the same standard
        // stream, only far slower on repetitive data, and a stop waits for the block being sorted.
        var sink = new BoundedBufferStream(output, 0, data.Length - 1);
        try
        {
            using (var bz = new BZip2OutputStream(sink, level) { IsStreamOwner = false })
            {
                for (var pos = 0; pos < data.Length; pos += ManagedBz2Slice)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    bz.Write(data.Slice(pos, Math.Min(ManagedBz2Slice, data.Length - pos)));
                }
            }

            return sink.Written;
        }
        catch (BoundedBufferStream.FullException)
        {
            return -1;
        }
    }

    private static bool LooksIncompressibleThroughout(ReadOnlySpan<byte> data)
    {
        for (var pos = 0; pos < data.Length; pos += ZlibSegment)
        {
            if (!Entropy.LooksIncompressible(data.Slice(pos, Math.Min(ZlibSegment, data.Length - pos))))
            {
                return false;
            }
        }

        return true;
    }
}
