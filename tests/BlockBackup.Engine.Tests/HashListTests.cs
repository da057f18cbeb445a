using BlockBackup.Engine.Format;
using BlockBackup.Engine.Hashing;
using Xunit;

namespace BlockBackup.Engine.Tests;

public class HashListTests
{
    [Fact]
    public void LargeListsSpillToATemporaryFileAndReadBackTheSame()
    {
        using var s = new Scratch();
        var spill = s.PathOf("spill");
        const int count = 10_000;
        var expected = new byte[count * 32];
        new Random(1).NextBytes(expected);
        using (var list = BlockHashList.Create(count, spill, inMemoryLimitBytes: 0))
        {
            Assert.True(list.IsSpilled);
            Assert.Single(Directory.GetFiles(spill));
            list.Set(5000, expected.AsSpan(5000 * 32, 5000 * 32));
            list.Set(0, expected.AsSpan(0, 5000 * 32));
            var back = new byte[count * 32];
            list.Get(0, back);
            Assert.Equal(expected, back);

            var path = s.PathOf("x_sha256file");
            var id = Guid.NewGuid();
            string checksum;
            using (var f = File.Create(path))
            {
                checksum = Sha256File.Write(f, new Sha256FileHeader(id, Guid.NewGuid(), "n", null, "2026-01-01 00:00:00+00:00", 32768), list, default);
            }

            var (header, read) = Sha256File.Read(path, id, checksum, spill, default);
            using (read)
            {
                Assert.Equal(count, read.Count);
                Assert.Equal(32768, header.ChunkSize);
                var again = new byte[count * 32];
                read.Get(0, again);
                Assert.Equal(expected, again);
            }
        }

        Assert.Empty(Directory.GetFiles(spill)); // deleted on close
    }

    private static readonly Guid ListId = Guid.Parse("0e9c7a4e-58f5-4a41-8f30-0d7c3c2b4d11");
    private static readonly Guid ListVolume = Guid.Parse("5b1d5f4c-2c6a-4e9e-9d1e-7f3a2b1c0d9e");

    private static string Entry(int i) => Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(BitConverter.GetBytes(i))).ToLowerInvariant();

    /// <summary>A hash list as text, the way Python's json.dumps(sort_keys=True, indent=2) lays it out.</summary>
    private static string CinderText(IEnumerable<string> entries, string? extraBefore = null)
    {
        var nl = Environment.NewLine;
        var list = string.Join("," + nl, entries.Select(e => "    \"" + e + "\""));
        return "{" + nl + extraBefore +
            "  \"backup_description\": null," + nl +
            $"  \"backup_id\": \"{ListId}\"," + nl +
            "  \"backup_name\": \"n\"," + nl +
            "  \"chunk_size\": 32768," + nl +
            "  \"created_at\": \"2026-01-01 00:00:00+00:00\"," + nl +
            "  \"sha256s\": [" + nl + list + nl + "  ]," + nl +
            "  \"version\": \"1.0.0\"," + nl +
            $"  \"volume_id\": \"{ListVolume}\"" + nl + "}";
    }

    private static (Sha256FileHeader Header, byte[] Hashes) ReadText(string text, int bufferSize) => ReadBytes(System.Text.Encoding.UTF8.GetBytes(text), bufferSize);

    private static (Sha256FileHeader Header, byte[] Hashes) ReadBytes(byte[] bytes, int bufferSize)
    {
        var (header, list) = Sha256File.Read(new MemoryStream(bytes), bytes.Length, "x_sha256file", ListId, null, null, default, bufferSize);
        using (list)
        {
            var all = new byte[list.Count * 32];
            list.Get(0, all);
            return (header, all);
        }
    }

    [Fact]
    public void TheWrittenListIsLaidOutAsCindersAndReadsBack()
    {
        var entries = Enumerable.Range(0, 3).Select(Entry).ToList();
        using var list = BlockHashList.Create(3);
        foreach (var e in entries)
        {
            list.Append(Convert.FromHexString(e));
        }

        var written = new MemoryStream();
        var checksum = Sha256File.Write(written, new Sha256FileHeader(ListId, ListVolume, "n", null, "2026-01-01 00:00:00+00:00", 32768), list, default);
        Assert.Equal(CinderText(entries), System.Text.Encoding.UTF8.GetString(written.ToArray()));
        Assert.Equal(Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(written.ToArray())).ToLowerInvariant(), checksum);
    }

    [Theory]
    [InlineData(1 << 20)]
    [InlineData(100)] // entries and keys split across reads
    [InlineData(7)]
    public void ListsReadTheSameWhereverTheReadsSplitThem(int bufferSize)
    {
        var entries = Enumerable.Range(0, 500).Select(Entry).ToList();
        var expected = entries.SelectMany(Convert.FromHexString).ToArray();
        var (header, hashes) = ReadText(CinderText(entries), bufferSize);
        Assert.Equal(expected, hashes);
        Assert.Equal((ListId, ListVolume, "n", (string?)null, 32768), (header.BackupId, header.VolumeId, header.Name, header.Description, header.ChunkSize));

        // Keys Cinder may add, holding anything (even "]" and a nested "sha256s"), are skipped;
        // escaped and upper-case digits are still hex.
        var odd = entries.ToList();
        odd[1] = $"\\u{(int)entries[1][0]:x4}" + entries[1][1..].Replace("a", "\\u0061", StringComparison.Ordinal);
        odd[2] = entries[2].ToUpperInvariant();
        var extra = "  \"a_future_field\": {\"sha256s\": [\"]\", {\"x\": [[]]}], \"s\": \"é \\\" ]}\"}," + Environment.NewLine;
        var (_, again) = ReadText(CinderText(odd, extra), bufferSize);
        Assert.Equal(expected, again);
    }

    [Theory]
    [InlineData("trailing", "unexpected content|after a single JSON value|invalid after")]
    [InlineData("truncated", "truncated")]
    [InlineData("empty", "truncated|does not contain any JSON")]
    [InlineData("not-hex", "entry 1 of 'sha256s'")]
    [InlineData("short-hash", "entry 1 of 'sha256s'")]
    [InlineData("twice", "'sha256s' appears twice")]
    [InlineData("chunk-float", "'chunk_size'")]
    [InlineData("chunk-huge", "'chunk_size'")]
    [InlineData("name-number", "'backup_name' is not a string")]
    [InlineData("not-utf8", @"not UTF-8 text \(a bad byte near byte 2\)")]
    [InlineData("too-deep", "depth")]
    [InlineData("array-root", "does not start with a JSON object")]
    public void DamagedListsEndInOneClearErrorNamingTheFile(string damage, string expected)
    {
        var entries = Enumerable.Range(0, 3).Select(Entry).ToList();
        var text = CinderText(entries);
        var bytes = damage switch
        {
            "trailing" => System.Text.Encoding.UTF8.GetBytes(text + " {}"),
            "truncated" => System.Text.Encoding.UTF8.GetBytes(text[..(text.Length / 2)]),
            "empty" => [],
            "not-hex" => System.Text.Encoding.UTF8.GetBytes(text.Replace(entries[1], "z" + entries[1][1..], StringComparison.Ordinal)),
            "short-hash" => System.Text.Encoding.UTF8.GetBytes(text.Replace(entries[1], entries[1][1..], StringComparison.Ordinal)),
            "twice" => System.Text.Encoding.UTF8.GetBytes(CinderText(entries, "  \"sha256s\": []," + Environment.NewLine)),
            "chunk-float" => System.Text.Encoding.UTF8.GetBytes(text.Replace("32768", "32768.5", StringComparison.Ordinal)),
            "chunk-huge" => System.Text.Encoding.UTF8.GetBytes(text.Replace("32768", "99999999999999999999999", StringComparison.Ordinal)),
            "name-number" => System.Text.Encoding.UTF8.GetBytes(text.Replace("\"n\"", "5", StringComparison.Ordinal)),
            "not-utf8" => [(byte)'{', (byte)'"', 0xC3, 0x28, .. System.Text.Encoding.UTF8.GetBytes(text[2..])],
            "too-deep" => System.Text.Encoding.UTF8.GetBytes(CinderText(entries, "  \"x\": [[[[[[[[[[1]]]]]]]]]]," + Environment.NewLine)),
            "array-root" => System.Text.Encoding.UTF8.GetBytes("[" + text + "]"),
            _ => throw new ArgumentOutOfRangeException(nameof(damage)),
        };
        foreach (var bufferSize in new[] { 1 << 20, 5 })
        {
            var ex = Assert.Throws<BlockBackup.Engine.Errors.BackupException>(() => ReadBytes(bytes, bufferSize));
            Assert.Equal("InvalidSha256File", ex.ErrorId);
            Assert.Contains("Hash list 'x_sha256file' is damaged", ex.Message, StringComparison.Ordinal);
            Assert.Matches(expected, ex.Message);
        }
    }

    [Fact]
    public void OutOfRangeAccessIsRefused()
    {
        using var list = BlockHashList.Create(4);
        Assert.Throws<ArgumentOutOfRangeException>(() => list.Set(3, new byte[64]));
        list.Set(0, new byte[32]);
        Assert.Throws<ArgumentOutOfRangeException>(() => list.Get(0, new byte[64]));
    }
}
