using Newtonsoft.Json;
using Newtonsoft.Json.Converters;
using BlockBackup.Engine.Errors;

namespace BlockBackup.Engine.Compression;

/// <summary>Per-object compression, as recorded in Cinder's metadata.</summary>
[JsonConverter(typeof(StringEnumConverter))]
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

    /// <summary>
    /// Refuses a level the codec does not have, rather than clamping it silently: zlib 1, 6 or 9
    /// (the levels .NET's zlib offers: fastest, default, smallest), bz2 1-9, zstd -7..19, none: no level.
    /// </summary>
    public static void ValidateLevel(CompressionAlgorithm algorithm, int? level)
    {
        if (level is not { } value)
        {
            return;
        }

        var (valid, allowed) = algorithm switch
        {
            CompressionAlgorithm.Zlib => (value is 1 or 6 or 9, "1 (fastest, the default), 6 or 9 (smallest)"),
            CompressionAlgorithm.Bz2 => (value is >= 1 and <= 9, "1 to 9 (the default)"),
            CompressionAlgorithm.Zstd => (value is >= -7 and <= 19, "-7 to 19 (default 1)"),
            _ => (false, "none: 'none' stores objects uncompressed, so it takes no level"),
        };
        if (!valid)
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "CompressionLevelOutOfRange",
                $"-CompressionLevel {value} is not a {ToMetadataName(algorithm)} level; {ToMetadataName(algorithm)} takes {allowed}.", value);
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
