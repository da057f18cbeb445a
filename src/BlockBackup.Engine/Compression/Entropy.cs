namespace BlockBackup.Engine.Compression;

/// <summary>
/// Order-0 entropy of a buffer: a cheap (memory-speed) test that tells random or already
/// compressed data, which deflate cannot shrink, from data worth compressing.
/// </summary>
internal static class Entropy
{
    /// <summary>Above this many bits per byte deflate saves under ~6%: store instead.</summary>
    public const double IncompressibleBitsPerByte = 7.5;

    public static double BitsPerByte(ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty)
        {
            return 0;
        }

        // Four interleaved histograms avoid the store-to-load stall of repeated bytes.
        Span<int> h = stackalloc int[1024];
        var i = 0;
        for (; i + 4 <= data.Length; i += 4)
        {
            h[data[i]]++;
            h[256 + data[i + 1]]++;
            h[512 + data[i + 2]]++;
            h[768 + data[i + 3]]++;
        }

        for (; i < data.Length; i++)
        {
            h[data[i]]++;
        }

        double bits = 0, n = data.Length;
        for (var k = 0; k < 256; k++)
        {
            var c = h[k] + h[256 + k] + h[512 + k] + h[768 + k];
            if (c > 0)
            {
                var p = c / n;
                bits -= p * Math.Log2(p);
            }
        }

        return bits;
    }

    public static bool LooksIncompressible(ReadOnlySpan<byte> data) => BitsPerByte(data) > IncompressibleBitsPerByte;
}
