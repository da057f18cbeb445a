using System.Buffers.Binary;
using System.Text;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Rbd;
using Xunit;

namespace BlockBackup.Engine.Tests;

public class RbdDiffTests
{
    private static byte[] Stream(Action<RbdDiffWriter> write)
    {
        var ms = new MemoryStream();
        write(new RbdDiffWriter(ms));
        return ms.ToArray();
    }

    /// <summary>Applies every record of a diff to a buffer (what import-diff does).</summary>
    internal static void Apply(RbdDiffReader reader, byte[] image)
    {
        while (reader.Next() is { } r)
        {
            if (r.Kind == RbdDiffRecordKind.Data)
            {
                reader.ReadData(image.AsSpan((int)r.Offset, (int)r.Length));
            }
            else
            {
                image.AsSpan((int)r.Offset, (int)r.Length).Clear();
            }
        }
    }

    [Fact]
    public void WriterAndReaderRoundTrip()
    {
        var data = Encoding.ASCII.GetBytes("hello rbd");
        var bytes = Stream(w =>
        {
            w.WriteHeader("backup.a.snap.1", "backup.b.snap.2", 1 << 20);
            w.WriteData(4096, data);
            w.WriteZero(65536, 8192);
            w.WriteEnd();
        });
        var reader = new RbdDiffReader(new MemoryStream(bytes), "test");
        Assert.Equal(1, reader.Version);
        Assert.Equal("backup.a.snap.1", reader.FromSnapshot);
        Assert.Equal("backup.b.snap.2", reader.ToSnapshot);
        Assert.Equal(1 << 20, reader.ImageSize);
        var first = reader.Next()!.Value;
        Assert.Equal(new RbdDiffRecord(RbdDiffRecordKind.Data, 4096, data.Length), first);
        var read = new byte[data.Length];
        reader.ReadData(read);
        Assert.Equal(data, read);
        Assert.Equal(new RbdDiffRecord(RbdDiffRecordKind.Zero, 65536, 8192), reader.Next());
        Assert.Null(reader.Next());
        Assert.Null(reader.Next());
        Assert.Equal(bytes.Length, reader.Position);
    }

    [Fact]
    public void UnreadDataIsSkipped()
    {
        var bytes = Stream(w => { w.WriteHeader(null, null, 100); w.WriteData(0, new byte[50]); w.WriteZero(50, 50); w.WriteEnd(); });
        var reader = new RbdDiffReader(new MemoryStream(bytes), "test");
        Assert.Equal(RbdDiffRecordKind.Data, reader.Next()!.Value.Kind);
        Assert.Equal(RbdDiffRecordKind.Zero, reader.Next()!.Value.Kind);
        Assert.Null(reader.Next());
    }

    public static TheoryData<string, string> Damaged()
    {
        var good = Stream(w => { w.WriteHeader(null, "s1", 1 << 16); w.WriteData(0, new byte[100]); w.WriteEnd(); });
        var data = new TheoryData<string, string>
        {
            { Convert.ToBase64String(Encoding.ASCII.GetBytes("rbd diff v9\ns")), "banner" },
            { Convert.ToBase64String(Encoding.ASCII.GetBytes("not a diff at all")), "banner" },
        };
        // Unknown tag in v1: cannot be skipped.
        var unknown = (byte[])good.Clone();
        unknown[unknown.Length - 1] = (byte)'q';
        data.Add(Convert.ToBase64String(unknown), "unknown record tag");
        // Truncated at several points: in the header, in a record, in the data, before 'e'.
        foreach (var cut in new[] { 5, 15, good.Length - 60, good.Length - 1 })
        {
            data.Add(Convert.ToBase64String(good[..cut]), "truncated");
        }

        // An extent beyond the image size.
        var beyond = Stream(w => { w.WriteHeader(null, null, 4096); w.WriteZero(0, 8192); w.WriteEnd(); });
        data.Add(Convert.ToBase64String(beyond), "beyond the image size");
        // Data before the size record.
        var ms = new MemoryStream();
        ms.Write(Encoding.ASCII.GetBytes(RbdDiffReader.BannerV1));
        ms.WriteByte((byte)'z');
        ms.Write(new byte[16]);
        ms.WriteByte((byte)'e');
        data.Add(Convert.ToBase64String(ms.ToArray()), "before the image size");
        return data;
    }

    [Theory]
    [MemberData(nameof(Damaged))]
    public void DamagedStreamsAreRejectedWithAPosition(string base64, string expected)
    {
        var ex = Assert.Throws<BackupException>(() =>
        {
            var reader = new RbdDiffReader(new MemoryStream(Convert.FromBase64String(base64)), "damaged.diff");
            while (reader.Next() is { } r)
            {
                if (r.Kind == RbdDiffRecordKind.Data)
                {
                    reader.ReadData(new byte[r.Length]);
                }
            }
        });
        Assert.Equal("InvalidRbdDiff", ex.ErrorId);
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        Assert.Matches(@"damaged\.diff is damaged at byte \d+", ex.Message);
    }

    [Fact]
    public void V2RecordsWithLengthsAndUnknownTagsAreRead()
    {
        var ms = new MemoryStream();
        ms.Write(Encoding.ASCII.GetBytes(RbdDiffReader.BannerV2));
        void Record(char tag, byte[] payload, long? announced = null)
        {
            ms.WriteByte((byte)tag);
            var len = new byte[8];
            BinaryPrimitives.WriteInt64LittleEndian(len, announced ?? payload.Length);
            ms.Write(len);
            ms.Write(payload);
        }

        var name = Encoding.UTF8.GetBytes("snap1");
        var t = new byte[4 + name.Length];
        BinaryPrimitives.WriteInt32LittleEndian(t, name.Length);
        name.CopyTo(t, 4);
        Record('t', t);
        Record('p', [1], announced: 8); // Ceph 16 announces 8 and writes 1
        var size = new byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(size, 1 << 20);
        Record('s', size);
        Record('X', [1, 2, 3]); // unknown in v2: skipped by its length
        var w = new byte[16 + 3];
        BinaryPrimitives.WriteInt64LittleEndian(w, 10);
        BinaryPrimitives.WriteInt64LittleEndian(w.AsSpan(8), 3);
        w[16] = 7; w[17] = 8; w[18] = 9;
        Record('w', w);
        ms.WriteByte((byte)'e');

        var reader = new RbdDiffReader(new MemoryStream(ms.ToArray()), "v2");
        Assert.Equal(2, reader.Version);
        Assert.Equal("snap1", reader.ToSnapshot);
        Assert.True(reader.IsProtected);
        var r = reader.Next()!.Value;
        Assert.Equal((10L, 3L), (r.Offset, r.Length));
        var bytes = new byte[3];
        reader.ReadData(bytes);
        Assert.Equal(new byte[] { 7, 8, 9 }, bytes);
        Assert.Null(reader.Next());
    }

    [CephFact]
    public void OurStreamsAreAcceptedByImportDiffAndRealExportDiffsParse()
    {
        using var ceph = new Ceph();
        const int size = 12 << 20;
        var image = ceph.NewImage(size: size);
        var expected = new byte[size];
        var rnd = new Random(3);

        // Snapshot 1 through our writer + the real import-diff (which creates the end snapshot).
        var first = new byte[3 << 20];
        rnd.NextBytes(first);
        first.CopyTo(expected, 1 << 20);
        using (var import = ceph.Client.Tool.StartImportDiff(image))
        {
            var writer = new RbdDiffWriter(import.StandardInput.BaseStream);
            writer.WriteHeader(null, "s1", size);
            writer.WriteData(1 << 20, first);
            writer.WriteEnd();
            import.StandardInput.Close();
            RbdTool.Finish(import, "import-diff");
        }

        Assert.Contains(ceph.Client.Snapshots(image), s => s.Name == "s1");
        Assert.Equal(expected, ceph.Read(image, "s1"));
        var atS1 = (byte[])expected.Clone();

        // Snapshot 2: new data, and zeros over part of the old data.
        var second = new byte[100_000];
        rnd.NextBytes(second);
        second.CopyTo(expected, 7 << 20);
        Array.Clear(expected, (1 << 20) + 4096, 1 << 20);
        using (var import = ceph.Client.Tool.StartImportDiff(image))
        {
            var writer = new RbdDiffWriter(import.StandardInput.BaseStream);
            writer.WriteHeader("s1", "s2", size);
            writer.WriteZero((1 << 20) + 4096, 1 << 20);
            writer.WriteData(7 << 20, second);
            writer.WriteEnd();
            import.StandardInput.Close();
            RbdTool.Finish(import, "import-diff");
        }

        Assert.Equal(expected, ceph.Read(image, "s2"));

        // The real export-diff, incremental and full, parsed by our reader and applied, gives the same bytes.
        foreach (var from in new[] { "s1", null })
        {
            using var export = ceph.Client.Tool.StartExportDiff(image, "s2", from, wholeObject: false);
            var reader = new RbdDiffReader(export.StandardOutput.BaseStream, "rbd export-diff");
            Assert.Equal(from, reader.FromSnapshot);
            Assert.Equal("s2", reader.ToSnapshot);
            Assert.Equal(size, reader.ImageSize);
            var rebuilt = from is null ? new byte[size] : (byte[])atS1.Clone();
            Apply(reader, rebuilt);
            RbdTool.Finish(export, "export-diff");
            Assert.Equal(expected, rebuilt);
        }

        // rbd export --export-format 2: v2 diffs chained snapshot to snapshot, then to HEAD.
        using (var exportV2 = StartRbd(ceph, "export", "--no-progress", "--export-format", "2", image.Spec, "-"))
        {
            var stream = exportV2.StandardOutput.BaseStream;
            var count = RbdImageExport.ReadToDiffs(stream, "rbd export v2");
            Assert.Equal(3, count);
            var rebuilt = new byte[size];
            for (var i = 0; i < count; i++)
            {
                var reader = new RbdDiffReader(stream, "rbd export v2");
                Assert.Equal(2, reader.Version);
                Apply(reader, rebuilt);
            }

            RbdTool.Finish(exportV2, "export v2");
            Assert.Equal(expected, rebuilt);
        }
    }

    private static System.Diagnostics.Process StartRbd(Ceph ceph, params string[] args)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("rbd") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { "--conf", Ceph.ConfPath! }.Concat(args))
        {
            psi.ArgumentList.Add(a);
        }

        return System.Diagnostics.Process.Start(psi)!;
    }
}
