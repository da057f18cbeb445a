using System.Buffers.Binary;
using System.Diagnostics;
using BlockBackup.Bench;
using BlockBackup.Engine.Compression;
using Xunit;

namespace BlockBackup.Engine.Tests;

public class CompressionCancellationTests
{
    /// <summary>Each codec at its slowest: level and data where one 64 MiB object takes many seconds.</summary>
    public static TheoryData<CompressionAlgorithm, int?, string> SlowCases() => new()
    {
        { CompressionAlgorithm.Bz2, null, "repetitive" },
        { CompressionAlgorithm.Bz2, null, "json-log" },
        { CompressionAlgorithm.Zstd, 19, "json-log" },
        { CompressionAlgorithm.Zlib, 9, "json-log" },
    };

    [Theory]
    [MemberData(nameof(SlowCases))]
    public void EncodingAnObjectStopsSoonAfterCancellation(CompressionAlgorithm algorithm, int? level, string input)
    {
        const int size = 64 << 20;
        var data = input == "repetitive" ? CodecInputs.RepetitiveText(size) : CodecInputs.JsonLog(size, 8);
        var output = new byte[size];
        var encoder = new ObjectEncoder(algorithm, level);
        using var cts = new CancellationTokenSource();
        var cancelledAt = TimeSpan.Zero;
        var clock = Stopwatch.StartNew();
        // A thread of its own, not a timer: other tests keep the thread pool busy.
        var canceller = new Thread(() =>
        {
            Thread.Sleep(200);
            cancelledAt = clock.Elapsed;
            cts.Cancel();
        });
        canceller.Start();
        var failure = Record.Exception(() => encoder.Encode(data, output, cts.Token));
        var stoppedAt = clock.Elapsed;
        canceller.Join(); // cancelledAt is read only after the thread that wrote it ended
        var stoppedAfter = stoppedAt - cancelledAt;
        Assert.True(failure is OperationCanceledException, failure?.ToString() ?? $"the encoder finished 64 MiB in {clock.Elapsed.TotalSeconds:F2} s, before it was cancelled");
        // A slice takes about 0.25 s at worst; the bound is generous for a shared machine.
        Assert.True(stoppedAfter < TimeSpan.FromSeconds(3), $"{algorithm} stopped {stoppedAfter.TotalSeconds:F2} s after cancellation");
    }

    [Fact]
    public void ZstdFramesStillCarryTheirContentSize()
    {
        // python-zstd (Cinder's zstd) refuses frames without it; ZSTD_compress always wrote it.
        var data = CodecInputs.JsonLog((2 << 20) + 99, 9);
        var output = new byte[data.Length];
        var (used, length) = new ObjectEncoder(CompressionAlgorithm.Zstd, 3).Encode(data, output);
        Assert.Equal(CompressionAlgorithm.Zstd, used);
        Assert.Equal(0xFD2FB528u, BinaryPrimitives.ReadUInt32LittleEndian(output));
        var descriptor = output[4];
        var sizeField = (descriptor >> 6) switch { 0 => (descriptor & 0x20) != 0 ? 1 : 0, 1 => 2, 2 => 4, _ => 8 };
        Assert.Equal(4, sizeField); // a 2 MiB object needs the 4-byte field
        var windowBytes = (descriptor & 0x20) != 0 ? 0 : 1;
        var dictionaryBytes = (descriptor & 3) switch { 0 => 0, 1 => 1, 2 => 2, _ => 4 };
        Assert.Equal((uint)data.Length, BinaryPrimitives.ReadUInt32LittleEndian(output.AsSpan(5 + windowBytes + dictionaryBytes)));
        using var decoder = ObjectDecoder.Open(new MemoryStream(output, 0, length), used, "o");
        var back = new MemoryStream();
        decoder.CopyTo(back);
        Assert.Equal(data, back.ToArray());
    }
}
