namespace BlockBackup.Engine.Compression;

/// <summary>Adler-32 (RFC 1950), the zlib trailer.</summary>
internal static class Adler32
{
    private const uint Mod = 65521;
    private const int NMax = 5552;

    public static uint Update(uint adler, ReadOnlySpan<byte> data)
    {
        uint a = adler & 0xFFFF, b = adler >> 16;
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
}
