using System.IO.Compression;
using ICSharpCode.SharpZipLib.BZip2;

namespace BlockBackup.Engine.Compression;

/// <summary>Opens a streaming decompressor for a stored object (objects may be ~2 GB: never buffered whole).</summary>
public static class ObjectDecoder
{
    public static Stream Open(Stream stored, CompressionAlgorithm algorithm, string objectName) => algorithm switch
    {
        CompressionAlgorithm.None => stored,
        CompressionAlgorithm.Zlib => new ZLibStream(stored, CompressionMode.Decompress),
        // libbz2 decodes 2-10x faster than SharpZipLib; the managed decoder only where it is absent.
        CompressionAlgorithm.Bz2 => Bz2.TryOpenDecompressor(stored, objectName) ?? new BZip2InputStream(stored),
        CompressionAlgorithm.Zstd => Zstd.OpenDecompressor(stored, objectName),
        _ => throw new ArgumentOutOfRangeException(nameof(algorithm)),
    };
}
