using System.Diagnostics;
using System.Globalization;
using System.Text;
using BlockBackup.Engine.Compression;

namespace BlockBackup.Bench;

/// <summary>
/// One object's worth of three kinds of data through each codec, encode and decode timed
/// separately (single thread, as one backup worker sees it). With --dir the inputs are written
/// out, so that bench/cinder_codecs.py can time Python's bz2/zlib (what Cinder uses) on the same bytes.
/// </summary>
internal static class CodecBenchmark
{
    public static int Run(string[] args)
    {
        var size = (int)Cli.ParseSize(Cli.Option(args, "--size") ?? "8M");
        var dir = Cli.Option(args, "--dir");
        var level = Cli.Option(args, "--level") is { } l ? int.Parse(l, CultureInfo.InvariantCulture) : (int?)null;
        var codecs = (Cli.Option(args, "--codecs") ?? "bz2,zlib,zstd").Split(',').Select(c => CompressionNames.Parse(c, "--codecs")).ToList();
        var inputs = CodecInputs.All(size);
        if (dir is not null)
        {
            Directory.CreateDirectory(dir);
            foreach (var (name, data) in inputs)
            {
                File.WriteAllBytes(Path.Combine(dir, name + ".bin"), data);
            }
        }

        Console.WriteLine($"{"codec",-5} {"input",-11} {"ratio",7} {"encode",9} {"MiB/s",7} {"decode",9} {"MiB/s",7}");
        var output = new byte[size];
        foreach (var codec in codecs)
        {
            var encoder = new ObjectEncoder(codec, level);
            foreach (var (name, data) in inputs)
            {
                var clock = Stopwatch.StartNew();
                CompressionAlgorithm used;
                int length;
                try
                {
                    (used, length) = encoder.Encode(data, output);
                }
                catch (BlockBackup.Engine.Errors.BackupException ex) when (ex.ErrorId == "ZstdUnavailable")
                {
                    Console.WriteLine(ex.Message);
                    break;
                }

                var encode = clock.Elapsed;
                var decode = TimeSpan.Zero;
                if (used != CompressionAlgorithm.None)
                {
                    clock.Restart();
                    using var decoder = ObjectDecoder.Open(new MemoryStream(output, 0, length), used, name);
                    var restored = new byte[size];
                    decoder.ReadExactly(restored);
                    decode = clock.Elapsed;
                    if (!restored.AsSpan().SequenceEqual(data))
                    {
                        throw new InvalidOperationException($"{codec} did not round-trip {name}");
                    }
                }

                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{CompressionNames.ToMetadataName(codec),-5} {name,-11} {(used == CompressionAlgorithm.None ? "stored" : $"{(double)length / size:P1}"),7} {encode.TotalSeconds,8:F3}s {size / 1048576.0 / encode.TotalSeconds,7:F1} {decode.TotalSeconds,8:F3}s {(decode > TimeSpan.Zero ? size / 1048576.0 / decode.TotalSeconds : 0),7:F1}"));
            }
        }

        return 0;
    }
}

/// <summary>The benchmark's inputs, also what the codec tests feed the encoders.</summary>
public static class CodecInputs
{
    /// <summary>Repetitive text (bzip2's worst case for block sorting), random bytes, and JSON-log-like text.</summary>
    public static List<(string Name, byte[] Data)> All(int size) =>
    [
        ("repetitive", RepetitiveText(size)),
        ("random", RandomBytes(size, 1)),
        ("json-log", JsonLog(size, 2)),
    ];

    public static byte[] RepetitiveText(int size)
    {
        var unit = "backup chain "u8;
        var data = new byte[size];
        for (var pos = 0; pos < size; pos += unit.Length)
        {
            unit[..Math.Min(unit.Length, size - pos)].CopyTo(data.AsSpan(pos));
        }

        return data;
    }

    public static byte[] RandomBytes(int size, int seed)
    {
        var data = new byte[size];
        new Random(seed).NextBytes(data);
        return data;
    }

    public static byte[] JsonLog(int size, int seed)
    {
        var rnd = new Random(seed);
        string[] levels = ["INFO", "INFO", "INFO", "DEBUG", "WARNING", "ERROR"];
        string[] messages = ["request handled", "backup object written", "volume attached", "snapshot deleted", "retrying after timeout", "quota exceeded"];
        var text = new StringBuilder(size + 512);
        var time = new DateTime(2024, 5, 1, 0, 0, 0, DateTimeKind.Utc);
        while (text.Length < size)
        {
            time = time.AddMilliseconds(rnd.Next(1, 2000));
            text.Append(CultureInfo.InvariantCulture,
                $$"""{"ts":"{{time:O}}","level":"{{levels[rnd.Next(levels.Length)]}}","host":"node-{{rnd.Next(40):D2}}","req":"{{new Guid(RandomBytes(16, rnd.Next()))}}","msg":"{{messages[rnd.Next(messages.Length)]}}","status":{{(rnd.Next(10) == 0 ? 500 : 200)}},"ms":{{rnd.Next(1, 5000)}}}""");
            text.Append('\n');
        }

        return Encoding.ASCII.GetBytes(text.ToString(0, size));
    }
}
