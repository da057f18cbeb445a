namespace BlockBackup.Engine.Compression;

/// <summary>
/// What every native decompressor stream has in common: forward-only and read-only, so that a
/// subclass writes only <see cref="Read(Span{byte})"/> and the release of its native state.
/// </summary>
internal abstract class DecompressingStream : Stream
{
    public abstract override int Read(Span<byte> buffer);

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));
    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
