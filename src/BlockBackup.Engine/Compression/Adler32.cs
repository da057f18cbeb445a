using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace BlockBackup.Engine.Compression;

/// <summary>
/// Adler-32 (RFC 1950), the zlib trailer. It runs over every byte stored in a zlib object, so it
/// is vectorised (AVX2), with the scalar loop as fallback and for tails.
/// </summary>
internal static class Adler32
{
    private const uint Mod = 65521;
    private const int NMax = 5552;

    public static uint Update(uint adler, ReadOnlySpan<byte> data)
    {
        uint a = adler & 0xFFFF, b = adler >> 16;
        if (Avx2.IsSupported && data.Length >= 64)
        {
            data = data[UpdateAvx2(ref a, ref b, data)..];
        }

        return Scalar(a, b, data);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)] // hot loop: skip tier-0 code
    internal static uint Scalar(uint a, uint b, ReadOnlySpan<byte> data)
    {
        while (data.Length > 0)
        {
            var n = Math.Min(data.Length, NMax);
            var chunk = data[..n];
            var i = 0;
            for (; i + 8 <= n; i += 8)
            {
                a += chunk[i]; b += a;
                a += chunk[i + 1]; b += a;
                a += chunk[i + 2]; b += a;
                a += chunk[i + 3]; b += a;
                a += chunk[i + 4]; b += a;
                a += chunk[i + 5]; b += a;
                a += chunk[i + 6]; b += a;
                a += chunk[i + 7]; b += a;
            }

            for (; i < n; i++)
            {
                a += chunk[i]; b += a;
            }

            a %= Mod;
            b %= Mod;
            data = data[n..];
        }

        return b << 16 | a;
    }

    /// <summary>
    /// For a run of N bytes: a += Σx, b += N·a + Σ(N−p)·x_p. Per 32-byte chunk, psadbw sums the
    /// bytes and pmaddubsw/pmaddwd weigh them 32..1; the prefix sums of earlier chunks supply the
    /// remaining 32·(chunks after) weight. Returns how many bytes were consumed.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)] // hot loop: skip tier-0 code
    private static int UpdateAvx2(ref uint a, ref uint b, ReadOnlySpan<byte> data)
    {
        var weights = Vector256.Create(32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, (sbyte)1);
        var ones = Vector256.Create((short)1);
        ref var start = ref MemoryMarshal.GetReference(data);
        var offset = 0;
        while (data.Length - offset >= 32)
        {
            var n = Math.Min(data.Length - offset, NMax) & ~31;
            var sums = Vector256<uint>.Zero;
            var weighted = Vector256<uint>.Zero;
            var prefix = Vector256<uint>.Zero;
            for (var i = 0; i < n; i += 32)
            {
                var v = Vector256.LoadUnsafe(ref Unsafe.Add(ref start, offset + i));
                prefix = Avx2.Add(prefix, sums);
                sums = Avx2.Add(sums, Avx2.SumAbsoluteDifferences(v, Vector256<byte>.Zero).AsUInt32());
                weighted = Avx2.Add(weighted, Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(v, weights), ones).AsUInt32());
            }

            var bytesSum = Sum(sums);
            var bNew = b + (ulong)n * a + 32 * Sum(prefix) + Sum(weighted);
            a = (uint)((a + bytesSum) % Mod);
            b = (uint)(bNew % Mod);
            offset += n;
        }

        return offset;
    }

    private static ulong Sum(Vector256<uint> v)
    {
        ulong total = 0;
        for (var i = 0; i < Vector256<uint>.Count; i++)
        {
            total += v.GetElement(i);
        }

        return total;
    }
}
