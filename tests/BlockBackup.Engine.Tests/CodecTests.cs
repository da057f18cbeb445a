using System.IO.Compression;
using BlockBackup.Engine.Compression;
using Xunit;

namespace BlockBackup.Engine.Tests;

public class CodecTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(31)]
    [InlineData(64)]
    [InlineData(5552)]
    [InlineData(5553 * 3 + 17)]
    [InlineData(1 << 20)]
    public void VectorisedAdler32MatchesTheScalarDefinition(int length)
    {
        var data = new byte[length];
        new Random(length).NextBytes(data);
        if (length > 100)
        {
            data.AsSpan(0, 100).Fill(0xFF); // worst case for the accumulators
        }

        Assert.Equal(Adler32.Scalar(1, 0, data), Adler32.Update(1, data));
        Assert.Equal(Adler32.Scalar(0x1234, 0x5678, data), Adler32.Update(0x5678_1234, data));
    }

    public static TheoryData<string> Mixes() => new() { "random", "text", "zeros", "mixed" };

    [Theory]
    [MemberData(nameof(Mixes))]
    public void ZlibObjectsAreStandardZlibStreams(string mix)
    {
        var data = new byte[(3 << 20) + 12345];
        var rnd = new Random(7);
        for (var pos = 0; pos < data.Length; pos += 256 * 1024)
        {
            var kind = mix == "mixed" ? "rtz"[pos / (256 * 1024) % 3] : mix[0];
            BlockBackup.Bench.VolumeGenerator.Fill(kind, rnd, data.AsSpan(pos, Math.Min(256 * 1024, data.Length - pos)));
        }

        var output = new byte[data.Length];
        var (used, length) = new ObjectEncoder(CompressionAlgorithm.Zlib).Encode(data, output);
        if (mix == "random")
        {
            Assert.Equal(CompressionAlgorithm.None, used); // never larger than the data: stored raw
            return;
        }

        Assert.Equal(CompressionAlgorithm.Zlib, used);
        using var z = new ZLibStream(new MemoryStream(output, 0, length), CompressionMode.Decompress);
        var back = new MemoryStream();
        z.CopyTo(back); // ZLibStream checks the Adler-32 trailer
        Assert.Equal(data, back.ToArray());
    }
}
