using System.Buffers.Binary;
using System.Text;
using BlockBackup.Engine.Errors;

namespace BlockBackup.Engine.Rbd;

/// <summary>
/// The wrapper of <c>rbd export --export-format 2</c>: "rbd image v2\n", metadata records
/// (tag, le64 length, payload) up to a bare 'E', "rbd image diffs v2\n", le64 diff count, then
/// that many v2 diffs (snapshot to snapshot, then to HEAD), each read with <see cref="RbdDiffReader"/>.
/// </summary>
public static class RbdImageExport
{
    public const string Banner = "rbd image v2\n";
    public const string DiffsBanner = "rbd image diffs v2\n";

    /// <summary>Consumes the image header; returns how many diffs follow.</summary>
    public static long ReadToDiffs(Stream stream, string source)
    {
        Expect(stream, Banner, source);
        Span<byte> length = stackalloc byte[8];
        while (true)
        {
            var tag = stream.ReadByte();
            if (tag < 0)
            {
                throw Damaged(source, "the image header is truncated");
            }

            if (tag == 'E')
            {
                break;
            }

            ReadExactly(stream, length, source);
            var n = BinaryPrimitives.ReadInt64LittleEndian(length);
            if (n < 0 || n > (1 << 20))
            {
                throw Damaged(source, $"image metadata record '{(char)tag}' announces {n} bytes");
            }

            ReadExactly(stream, new byte[n], source); // order, features, stripe, image-meta: not needed to apply diffs
        }

        Expect(stream, DiffsBanner, source);
        ReadExactly(stream, length, source);
        var count = BinaryPrimitives.ReadInt64LittleEndian(length);
        if (count < 0 || count > 1_000_000)
        {
            throw Damaged(source, $"the diff count {count} is not plausible");
        }

        return count;
    }

    private static void Expect(Stream stream, string banner, string source)
    {
        var bytes = new byte[banner.Length];
        ReadExactly(stream, bytes, source);
        if (Encoding.ASCII.GetString(bytes) != banner)
        {
            throw Damaged(source, $"expected the banner \"{banner.TrimEnd()}\"");
        }
    }

    private static void ReadExactly(Stream stream, Span<byte> buffer, string source)
    {
        if (stream.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false) < buffer.Length)
        {
            throw Damaged(source, "the stream is truncated");
        }
    }

    private static BackupException Damaged(string source, string what) =>
        new(BackupErrorKind.InvalidData, "InvalidRbdExport", $"RBD image export stream from {source} is damaged: {what}.", source);
}
