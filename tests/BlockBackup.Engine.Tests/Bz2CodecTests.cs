using System.Diagnostics;
using BlockBackup.Bench;
using BlockBackup.Engine.Compression;
using ICSharpCode.SharpZipLib.BZip2;
using Xunit;

namespace BlockBackup.Engine.Tests;

public class Bz2CodecTests
{
    public static TheoryData<string> Inputs() => new() { "repetitive", "json-log", "mixed" };

    private static byte[] Input(string name, int size) => name switch
    {
        "repetitive" => CodecInputs.RepetitiveText(size),
        "json-log" => CodecInputs.JsonLog(size, 3),
        _ => Mixed(size),
    };

    private static byte[] Mixed(int size)
    {
        var data = new byte[size];
        var rnd = new Random(5);
        for (var pos = 0; pos < size; pos += 256 * 1024)
        {
            VolumeGenerator.Fill("rtz"[pos / (256 * 1024) % 3], rnd, data.AsSpan(pos, Math.Min(256 * 1024, size - pos)));
        }

        return data;
    }

    [Fact]
    public void TheSystemLibbz2IsUsedOnDebian()
    {
        // libbz2.so.1.0 ships with every Debian system; without it the slow fallback would go unnoticed.
        Assert.True(!OperatingSystem.IsLinux() || Bz2.IsAvailable, "libbz2.so.1.0 was not loaded");
    }

    [Theory]
    [MemberData(nameof(Inputs))]
    public void Bz2ObjectsArePythonReadableStandardStreams(string input)
    {
        var data = Input(input, (3 << 20) + 4321);
        var output = new byte[data.Length];
        var (used, length) = new ObjectEncoder(CompressionAlgorithm.Bz2).Encode(data, output);
        Assert.Equal(CompressionAlgorithm.Bz2, used);

        // Python's bz2 module is what Cinder decompresses with.
        var dir = Directory.CreateTempSubdirectory("bbbz2-");
        try
        {
            var packed = Path.Combine(dir.FullName, "object.bz2");
            var unpacked = Path.Combine(dir.FullName, "object");
            File.WriteAllBytes(packed, output[..length]);
            var psi = new ProcessStartInfo("python3") { RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in new[] { "-c", "import bz2,sys; open(sys.argv[2],'wb').write(bz2.decompress(open(sys.argv[1],'rb').read()))", packed, unpacked })
            {
                psi.ArgumentList.Add(a);
            }

            using var python = Process.Start(psi)!;
            var errors = python.StandardError.ReadToEnd();
            python.WaitForExit();
            Assert.True(python.ExitCode == 0, errors);
            Assert.Equal(data, File.ReadAllBytes(unpacked));
        }
        finally
        {
            dir.Delete(recursive: true);
        }

        // And both decoders read it.
        Assert.Equal(data, Decode(ObjectDecoder.Open(new MemoryStream(output, 0, length), CompressionAlgorithm.Bz2, "o")));
        Assert.Equal(data, Decode(new BZip2InputStream(new MemoryStream(output, 0, length))));
    }

    [Fact]
    public void TheNativeDecoderReadsSharpZipLibStreamsAndConcatenatedOnes()
    {
        var first = CodecInputs.JsonLog(1 << 20, 4);
        var second = CodecInputs.RepetitiveText(777_777);
        var packed = new MemoryStream();
        foreach (var part in new[] { first, second })
        {
            using var bz = new BZip2OutputStream(packed, 9) { IsStreamOwner = false };
            bz.Write(part);
        }

        using var decoder = Bz2.TryOpenDecompressor(new MemoryStream(packed.ToArray()), "o");
        Assert.NotNull(decoder);
        Assert.Equal([.. first, .. second], Decode(decoder));
    }

    [Theory]
    [InlineData("truncated")]
    [InlineData("trailing garbage")]
    [InlineData("damaged header")]
    public void TheNativeDecoderReportsDamageAsInvalidData(string damage)
    {
        var data = CodecInputs.JsonLog(1 << 20, 6);
        var output = new byte[data.Length];
        var (_, length) = new ObjectEncoder(CompressionAlgorithm.Bz2).Encode(data, output);
        var stored = damage switch
        {
            "truncated" => output[..(length / 2)],
            "trailing garbage" => [.. output[..length], .. "not bzip2"u8.ToArray()],
            _ => [.. "BZh0"u8.ToArray(), .. output[4..length]],
        };

        using var decoder = Bz2.TryOpenDecompressor(new MemoryStream(stored), "volume_x-00001");
        Assert.NotNull(decoder);
        var ex = Assert.Throws<InvalidDataException>(() => Decode(decoder));
        Assert.Contains("volume_x-00001", ex.Message, StringComparison.Ordinal);
    }

    private static byte[] Decode(Stream decoder)
    {
        var back = new MemoryStream();
        decoder.CopyTo(back);
        return back.ToArray();
    }
}
