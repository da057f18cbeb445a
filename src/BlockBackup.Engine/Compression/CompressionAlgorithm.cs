using BlockBackup.Engine.Errors;

namespace BlockBackup.Engine.Compression;

/// <summary>Per-object compression, as recorded in Cinder's metadata.</summary>
public enum CompressionAlgorithm
{
    None,
    Zlib,
    Bz2,
    Zstd,
}

public static class CompressionNames
{
    /// <summary>The name written into metadata (Cinder writes the lower-cased configured name).</summary>
    public static string ToMetadataName(CompressionAlgorithm algorithm) => algorithm switch
    {
        CompressionAlgorithm.None => "none",
        CompressionAlgorithm.Zlib => "zlib",
        CompressionAlgorithm.Bz2 => "bz2",
        CompressionAlgorithm.Zstd => "zstd",
        _ => throw new ArgumentOutOfRangeException(nameof(algorithm)),
    };

    /// <summary>
    /// Parses a metadata or user-supplied name, including Cinder's aliases
    /// (gzip → zlib framing, bzip2, off/no → none).
    /// </summary>
    public static bool TryParse(string? name, out CompressionAlgorithm algorithm)
    {
        switch (name?.Trim().ToLowerInvariant())
        {
            case "none": case "off": case "no":
                algorithm = CompressionAlgorithm.None; return true;
            case "zlib": case "gzip":
                algorithm = CompressionAlgorithm.Zlib; return true;
            case "bz2": case "bzip2":
                algorithm = CompressionAlgorithm.Bz2; return true;
            case "zstd":
                algorithm = CompressionAlgorithm.Zstd; return true;
            default:
                algorithm = default; return false;
        }
    }

    public static CompressionAlgorithm Parse(string? name, string context)
    {
        if (TryParse(name, out var algorithm))
        {
            return algorithm;
        }

        throw new BackupException(BackupErrorKind.InvalidData, "UnsupportedCompression",
            $"{context}: unsupported compression algorithm '{name}'. Known: none, zlib (gzip), bz2 (bzip2), zstd.", name);
    }
}
