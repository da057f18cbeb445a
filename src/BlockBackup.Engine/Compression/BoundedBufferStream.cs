namespace BlockBackup.Engine.Compression;

/// <summary>
/// A write-only stream into a fixed buffer. When the output would not be smaller than the
/// input, compressing further is pointless (the object is stored raw, as Cinder does), so
/// overflowing throws <see cref="FullException"/> and the caller stops early.
/// </summary>
internal sealed class BoundedBufferStream(byte[] buffer, int start, int capacity) : Stream
{
    public sealed class FullException : Exception;

    public int Written { get; private set; }

    /// <summary>While set, writes are dropped (used to discard a compressor's final block).</summary>
    public bool Discarding { get; set; }

    public override void Write(ReadOnlySpan<byte> data)
    {
        if (Discarding)
        {
            return;
        }

        if (Written + data.Length > capacity)
        {
            throw new FullException();
        }

        data.CopyTo(buffer.AsSpan(start + Written));
        Written += data.Length;
    }

    public override void Write(byte[] data, int offset, int count) => Write(data.AsSpan(offset, count));
    public override void WriteByte(byte value) => Write([value]);
    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => Written;
    public override long Position { get => Written; set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override int Read(byte[] b, int o, int c) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}
