namespace BlockBackup.Bench;

/// <summary>
/// Deterministic benchmark volumes, laid out in 1 MiB regions like the reference generator
/// Cinder was measured with: 40% random, 30% compressible text, 15% written zeros, 15% holes
/// (or a given hole percentage with the rest split 40:30:15). Every data region is unique.
/// </summary>
public static class VolumeGenerator
{
    public const int Region = 1 << 20;

    private static readonly byte[] Alphabet = "eeeeeeeettttttaaaaaoooooiiiinnnnsssshhhrrrdddllcumwfgypbvk0123456789      \n,:"u8.ToArray();
    private static readonly byte[][] Templates =
    [
        "{\"ts\":\"2024-05-17\",\"level\":\"INFO\",\"svc\":\"api\",\"msg\":\""u8.ToArray(), "\", \"user_id\": "u8.ToArray(),
        "\n2024-05-17T12:17:17.123Z DEBUG [worker-17] request "u8.ToArray(), " status=200 bytes="u8.ToArray(),
        " path=/api/v1/volumes/"u8.ToArray(), "\",\"latency_ms\":"u8.ToArray(), "<row><id>"u8.ToArray(), "</id><name>"u8.ToArray(),
        "</name><state>available</state></row>\n"u8.ToArray(), "INSERT INTO backups (id, volume_id, status) VALUES ("u8.ToArray(),
    ];

    public static void Create(string path, long size, int seed = 1, double? holesPercent = null)
    {
        if (size % Region != 0)
        {
            throw new ArgumentException("size must be a multiple of 1 MiB");
        }

        var n = (int)(size / Region);
        int random, text, zeros;
        if (holesPercent is null)
        {
            random = (int)Math.Round(n * 0.40);
            text = (int)Math.Round(n * 0.30);
            zeros = (int)Math.Round(n * 0.15);
        }
        else
        {
            var rest = n - (int)Math.Round(n * holesPercent.Value / 100);
            random = (int)Math.Round(rest * 40 / 85.0);
            text = (int)Math.Round(rest * 30 / 85.0);
            zeros = rest - random - text;
        }

        var kinds = new List<char>();
        kinds.AddRange(Enumerable.Repeat('r', random));
        kinds.AddRange(Enumerable.Repeat('t', text));
        kinds.AddRange(Enumerable.Repeat('z', zeros));
        kinds.AddRange(Enumerable.Repeat('h', Math.Max(0, n - random - text - zeros)));
        var shuffle = new Random(seed);
        for (var i = kinds.Count - 1; i > 0; i--)
        {
            var j = shuffle.Next(i + 1);
            (kinds[i], kinds[j]) = (kinds[j], kinds[i]);
        }

        File.Delete(path);
        using var f = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 0);
        var buffer = new byte[Region];
        for (var i = 0; i < kinds.Count; i++)
        {
            if (kinds[i] == 'h')
            {
                continue;
            }

            var rnd = new Random(HashCode.Combine(seed, i, 0x5eed));
            Fill(kinds[i], rnd, buffer);
            RandomAccess.Write(f.SafeFileHandle, buffer, (long)i * Region);
        }

        f.SetLength(size);
    }

    /// <summary>Overwrites about <paramref name="percent"/>% of the volume in 4–64 KiB writes plus one contiguous 0.5% region.</summary>
    public static long Mutate(string path, double percent, int seed)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None, 0);
        var size = f.Length;
        var rnd = new Random(seed ^ 0x5EED0000);
        var target = (long)(size * percent / 100);
        var blocks4k = size / 4096;
        long done = 0;
        var buffer = new byte[Region];
        while (done < target && blocks4k > 16)
        {
            var len = rnd.Next(1, 17) * 4096;
            var off = rnd.NextInt64(0, blocks4k - 16) * 4096;
            Fill(rnd.Next(2) == 0 ? 'r' : 't', rnd, buffer.AsSpan(0, len));
            RandomAccess.Write(f.SafeFileHandle, buffer.AsSpan(0, len), off);
            done += len;
        }

        var contiguous = (long)(size * 0.005) / 4096 * 4096;
        if (contiguous > 0)
        {
            var off = rnd.NextInt64(0, (size - contiguous) / Region + 1) * Region;
            for (long pos = 0; pos < contiguous; pos += Region)
            {
                var len = (int)Math.Min(Region, contiguous - pos);
                Fill(rnd.Next(2) == 0 ? 'r' : 't', rnd, buffer.AsSpan(0, len));
                RandomAccess.Write(f.SafeFileHandle, buffer.AsSpan(0, len), off + pos);
            }

            done += contiguous;
        }

        return done;
    }

    public static void Fill(char kind, Random rnd, Span<byte> buffer)
    {
        switch (kind)
        {
            case 'r':
                rnd.NextBytes(buffer);
                break;
            case 'z':
                buffer.Clear();
                break;
            default:
                var pos = 0;
                Span<byte> word = stackalloc byte[24];
                while (pos < buffer.Length)
                {
                    var t = Templates[rnd.Next(Templates.Length)];
                    var take = Math.Min(t.Length, buffer.Length - pos);
                    t.AsSpan(0, take).CopyTo(buffer[pos..]);
                    pos += take;
                    var w = Math.Min(5 + rnd.Next(16), buffer.Length - pos);
                    rnd.NextBytes(word[..w]);
                    for (var k = 0; k < w; k++)
                    {
                        buffer[pos + k] = Alphabet[word[k] % Alphabet.Length];
                    }

                    pos += w;
                }

                break;
        }
    }
}
