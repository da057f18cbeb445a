using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Rbd.Librbd;

namespace BlockBackup.Engine.Rbd;

/// <summary>Where copied extents go: an RBD image or a file/device. Buffers are native memory.</summary>
internal interface IExtentSink
{
    Task WriteAsync(long offset, int length, IntPtr data);

    Task ZeroAsync(long offset, long length);
}

/// <summary>What a copy moved: data written, ranges zeroed, and zero data not written to an empty sink.</summary>
public readonly record struct ExtentCopyStats(long DataBytes, long ZeroedBytes, long SkippedZeroBytes);

/// <summary>
/// Copies extents of an image (at a snapshot) to a sink, in pieces that never cross a RADOS
/// object, with many reads and writes in flight: the cost of a copy follows the data moved, not
/// the round trip of one request at a time (which is what limits <c>rbd import-diff</c>).
/// Data that reads as zeros is not written to a sink known to be empty, and written as a zero
/// range otherwise (which deallocates), so copies stay thin.
/// </summary>
internal static class RbdExtentCopy
{
    /// <summary>Largest piece: RBD's default object size.</summary>
    private const int LargePiece = 4 << 20;
    private const int SmallPiece = 64 << 10;

    public static ExtentCopyStats Run(RbdImage source, IReadOnlyList<RbdExtent> extents, long objectSize, IExtentSink sink, bool sinkIsEmpty,
        ProgressThrottle? progress, CancellationToken cancellationToken) =>
        RunAsync(source, extents, objectSize, sink, sinkIsEmpty, progress, cancellationToken).GetAwaiter().GetResult();

    private static async Task<ExtentCopyStats> RunAsync(RbdImage source, IReadOnlyList<RbdExtent> extents, long objectSize, IExtentSink sink, bool sinkIsEmpty,
        ProgressThrottle? progress, CancellationToken cancellationToken)
    {
        // Many small pieces (scattered changes) and a few large ones (full copies) in flight:
        // at most 64 × 64 KiB + 16 × 4 MiB = 68 MiB of buffers.
        using var small = new NativeBufferPool(SmallPiece, 64);
        using var large = new NativeBufferPool(LargePiece, 16);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        long data = 0, zeroed = 0, skipped = 0;
        var pending = new List<Task>();
        Exception? failure = null;

        async Task CopyPiece(long offset, int length, bool exists, NativeBufferPool pool, IntPtr buffer)
        {
            try
            {
                var zeros = !exists;
                if (exists)
                {
                    var read = await source.ReadAsync(offset, length, buffer).ConfigureAwait(false);
                    if (read != length)
                    {
                        throw new BackupException(BackupErrorKind.ReadError, "RbdShortRead",
                            $"Reading {length} bytes at offset {offset} of {source.Name} returned {read} bytes; did the image shrink during the copy?", source.Reference.Spec);
                    }

                    zeros = NativeBufferPool.IsZero(buffer, length);
                    if (!zeros)
                    {
                        await sink.WriteAsync(offset, length, buffer).ConfigureAwait(false);
                        Interlocked.Add(ref data, length);
                        return;
                    }
                }

                if (sinkIsEmpty)
                {
                    Interlocked.Add(ref skipped, exists ? length : 0);
                }
                else
                {
                    await sink.ZeroAsync(offset, length).ConfigureAwait(false);
                    Interlocked.Add(ref zeroed, length);
                }
            }
            catch (Exception ex)
            {
                Interlocked.CompareExchange(ref failure, ex, null);
                stop.Cancel(); // no new pieces; those in flight finish
            }
            finally
            {
                pool.Return(buffer);
                progress?.Add(length);
            }
        }

        try
        {
            foreach (var (offset, length, exists) in Pieces(extents, objectSize))
            {
                // Each piece waits here for a buffer of its size (a zero range takes a small one
                // it does not use), which bounds what is in flight.
                var pool = !exists || length <= SmallPiece ? small : large;
                var buffer = await pool.RentAsync(stop.Token).ConfigureAwait(false);
                pending.Add(CopyPiece(offset, length, exists, pool, buffer));
                if (pending.Count >= 1024)
                {
                    pending.RemoveAll(t => t.IsCompleted);
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // A failed piece or the caller's cancellation: stop issuing, report below.
        }
        finally
        {
            // Whatever happened, I/O in flight still uses the buffers and the images, which are
            // released when this returns. (CopyPiece never throws: it records its failure.)
            await Task.WhenAll(pending).ConfigureAwait(false);
        }

        if (failure is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure); // keeps the piece's stack trace
        }

        cancellationToken.ThrowIfCancellationRequested();
        return new ExtentCopyStats(data, zeroed, skipped);
    }

    /// <summary>Extents cut at object boundaries and at 4 MiB.</summary>
    internal static IEnumerable<(long Offset, int Length, bool Exists)> Pieces(IReadOnlyList<RbdExtent> extents, long objectSize)
    {
        foreach (var extent in extents)
        {
            for (var offset = extent.Offset; offset < extent.Offset + extent.Length;)
            {
                var objectEnd = (offset / objectSize + 1) * objectSize;
                var end = Math.Min(Math.Min(extent.Offset + extent.Length, objectEnd), offset + LargePiece);
                yield return (offset, (int)(end - offset), extent.Exists);
                offset = end;
            }
        }
    }
}
