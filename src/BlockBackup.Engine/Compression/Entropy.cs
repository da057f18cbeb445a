namespace BlockBackup.Engine.Compression;

/// <summary>
/// Order-0 entropy of a buffer: a cheap (memory-speed) test that tells random or already
/// compressed data, which deflate cannot shrink, from data worth compressing.
/// </summary>
internal static class Entropy
{
    /// <summary>Above this many bits per byte deflate saves under ~6%: store instead.</summary>
    public const double IncompressibleBitsPerByte = 7.5;

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)] // hot loop: skip tier-0 code
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

    /// <summary>
    /// Estimated on a sample: the first 4 KiB of every 16 KiB, enough for a stable order-0
    /// estimate at a quarter of the cost (data is uniform at this scale: files, not bytes).
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)] // hot loop: skip tier-0 code
    public static bool LooksIncompressible(ReadOnlySpan<byte> data)
    {
        const int page = 4096, stride = 16384;
        if (data.Length <= stride)
        {
            return BitsPerByte(data) > IncompressibleBitsPerByte;
        }

        Span<byte> sample = stackalloc byte[Math.Min(32 * page, (data.Length + stride - 1) / stride * page)];
        var taken = 0;
        for (var pos = 0; pos < data.Length && taken < sample.Length; pos += stride)
        {
            var n = Math.Min(page, Math.Min(data.Length - pos, sample.Length - taken));
            data.Slice(pos, n).CopyTo(sample[taken..]);
            taken += n;
        }

        return BitsPerByte(sample[..taken]) > IncompressibleBitsPerByte;
    }
}
