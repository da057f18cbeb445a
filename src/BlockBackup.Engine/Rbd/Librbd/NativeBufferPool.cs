using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace BlockBackup.Engine.Rbd.Librbd;

/// <summary>
/// A fixed number of equal native buffers for asynchronous I/O: native so that librbd can fill
/// them after the call returns without pinning, and fixed in number so that a copy's memory is
/// bounded (count × size) whatever the image size.
/// </summary>
internal sealed class NativeBufferPool(int bufferSize, int count) : IDisposable
{
    private readonly SemaphoreSlim available = new(count, count);
    private readonly ConcurrentBag<IntPtr> free = [];
    private readonly ConcurrentBag<IntPtr> all = [];

    public int BufferSize { get; } = bufferSize;

    public async Task<IntPtr> RentAsync(CancellationToken cancellationToken)
    {
        await available.WaitAsync(cancellationToken).ConfigureAwait(false);
        return Take();
    }

    /// <summary>Waits for a buffer on the calling thread (a single consumer that returns its own).</summary>
    public IntPtr Rent()
    {
        available.Wait();
        return Take();
    }

    /// <summary>A free buffer, allocated on first need; the caller holds a slot of <see cref="available"/>.</summary>
    private IntPtr Take()
    {
        if (!free.TryTake(out var buffer))
        {
            buffer = Allocate(BufferSize);
            all.Add(buffer);
        }

        return buffer;
    }

    public void Return(IntPtr buffer)
    {
        free.Add(buffer);
        available.Release();
    }

    private static unsafe IntPtr Allocate(int size) => (IntPtr)NativeMemory.Alloc((nuint)size);

    public static unsafe bool IsZero(IntPtr buffer, int length) => new ReadOnlySpan<byte>((void*)buffer, length).IndexOfAnyExcept((byte)0) < 0;

    public unsafe void Dispose()
    {
        foreach (var buffer in all)
        {
            NativeMemory.Free((void*)buffer);
        }

        all.Clear();
        free.Clear();
        available.Dispose();
    }
}
