using BlockBackup.Engine.Operations;
using BlockBackup.Engine.Rbd.Librbd;

namespace BlockBackup.Engine.Rbd;

/// <summary>Copies into an open RBD image: asynchronous writes, zero ranges as write-zeroes (which deallocate).</summary>
internal sealed class RbdImageSink(RbdImage image) : IExtentSink
{
    public Task WriteAsync(long offset, int length, IntPtr data) => image.WriteAsync(offset, length, data);

    public Task ZeroAsync(long offset, long length) => image.WriteZeroesAsync(offset, length);
}

/// <summary>Copies into a restore target (file or block device); positional writes, so pieces may land in any order.</summary>
internal sealed class RestoreTargetSink(RestoreTarget target) : IExtentSink
{
    private static readonly byte[] Zeros = new byte[1 << 20];

    public unsafe Task WriteAsync(long offset, int length, IntPtr data)
    {
        target.Write(new ReadOnlySpan<byte>((void*)data, length), offset);
        return Task.CompletedTask;
    }

    public Task ZeroAsync(long offset, long length)
    {
        target.Zero(offset, length, Zeros);
        return Task.CompletedTask;
    }
}
