using System.Buffers.Binary;
using System.Text;

namespace BlockBackup.Engine.Rbd;

/// <summary>Writes <c>rbd export-diff</c> v1 streams, which the real <c>rbd import-diff</c> accepts.</summary>
public sealed class RbdDiffWriter(Stream stream)
{
    private readonly byte[] _scratch = new byte[17];

    public void WriteHeader(string? fromSnapshot, string? toSnapshot, long imageSize)
    {
        stream.Write(Encoding.ASCII.GetBytes(RbdDiffReader.BannerV1));
        if (fromSnapshot is not null)
        {
            WriteName('f', fromSnapshot);
        }

        if (toSnapshot is not null)
        {
            WriteName('t', toSnapshot);
        }

        _scratch[0] = (byte)'s';
        BinaryPrimitives.WriteInt64LittleEndian(_scratch.AsSpan(1), imageSize);
        stream.Write(_scratch, 0, 9);
    }

    public void WriteData(long offset, ReadOnlySpan<byte> data)
    {
        WriteExtent('w', offset, data.Length);
        stream.Write(data);
    }

    public void WriteZero(long offset, long length) => WriteExtent('z', offset, length);

    public void WriteEnd() => stream.WriteByte((byte)'e');

    private void WriteExtent(char tag, long offset, long length)
    {
        _scratch[0] = (byte)tag;
        BinaryPrimitives.WriteInt64LittleEndian(_scratch.AsSpan(1), offset);
        BinaryPrimitives.WriteInt64LittleEndian(_scratch.AsSpan(9), length);
        stream.Write(_scratch, 0, 17);
    }

    private void WriteName(char tag, string name)
    {
        var bytes = Encoding.UTF8.GetBytes(name);
        _scratch[0] = (byte)tag;
        BinaryPrimitives.WriteInt32LittleEndian(_scratch.AsSpan(1), bytes.Length);
        stream.Write(_scratch, 0, 5);
        stream.Write(bytes);
    }
}
