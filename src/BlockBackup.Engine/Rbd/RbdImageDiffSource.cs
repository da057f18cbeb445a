using BlockBackup.Engine.Rbd.Librbd;

namespace BlockBackup.Engine.Rbd;

/// <summary>
/// Extents of an image (at a snapshot) read through librbd as a diff source, with the next
/// pieces (object-aligned, at most 4 MiB) already being read while the current one is consumed:
/// the consumer sees a sequential stream, the cluster sees several object reads in flight.
/// Memory: <see cref="Depth"/> pieces.
/// </summary>
internal sealed class RbdImageDiffSource : IRbdDiffSource, IDisposable
{
    public const int Depth = 8;
    private const int PieceSize = 4 << 20;

    private readonly RbdImage _image;
    private readonly IReadOnlyList<RbdExtent> _extents;
    private readonly List<(long Offset, int Length)> _dataPieces;
    private readonly Queue<(int Length, IntPtr Buffer, Task<long> Read)> _inFlight = new();
    private readonly NativeBufferPool _buffers = new(PieceSize, Depth);
    private int _nextExtent;
    private int _nextPiece;
    private long _dataLeft;
    private int _headConsumed;

    public RbdImageDiffSource(RbdImage image, IReadOnlyList<RbdExtent> extents, long imageSize, long objectSize)
    {
        _image = image;
        _extents = extents;
        ImageSize = imageSize;
        _dataPieces = RbdExtentCopy.Pieces(extents.Where(e => e.Exists).ToList(), Math.Min(objectSize, PieceSize)).Select(p => (p.Offset, p.Length)).ToList();
        TopUp();
    }

    public long? ImageSize { get; }

    public RbdDiffRecord? Next()
    {
        while (_dataLeft > 0)
        {
            Consume((int)Math.Min(_dataLeft, int.MaxValue), null);
        }

        if (_nextExtent >= _extents.Count)
        {
            return null;
        }

        var extent = _extents[_nextExtent++];
        _dataLeft = extent.Exists ? extent.Length : 0;
        return new RbdDiffRecord(extent.Exists ? RbdDiffRecordKind.Data : RbdDiffRecordKind.Zero, extent.Offset, extent.Length);
    }

    public void ReadData(Span<byte> destination)
    {
        if (destination.Length > _dataLeft)
        {
            throw new InvalidOperationException($"Only {_dataLeft} bytes of the current record are left.");
        }

        Consume(destination.Length, destination);
    }

    /// <summary>Takes <paramref name="count"/> bytes from the pieces in flight, into <paramref name="destination"/> or nowhere.</summary>
    private unsafe void Consume(int count, Span<byte> destination)
    {
        var done = 0;
        while (done < count)
        {
            var (length, buffer, read) = _inFlight.Peek();
            var got = read.GetAwaiter().GetResult(); // read errors name the image and offset
            if (got != length)
            {
                throw new Errors.BackupException(Errors.BackupErrorKind.ReadError, "RbdShortRead", $"{_image.Name} returned {got} of {length} bytes; did it shrink while being read?", _image.Reference.Spec);
            }

            var n = Math.Min(count - done, length - _headConsumed);
            if (!destination.IsEmpty)
            {
                new ReadOnlySpan<byte>((byte*)buffer + _headConsumed, n).CopyTo(destination.Slice(done, n));
            }

            done += n;
            _headConsumed += n;
            _dataLeft -= n;
            if (_headConsumed == length)
            {
                _inFlight.Dequeue();
                _buffers.Return(buffer);
                _headConsumed = 0;
                TopUp();
            }
        }
    }

    private void TopUp()
    {
        // At most Depth pieces are in flight, so a buffer is always free here.
        while (_inFlight.Count < Depth && _nextPiece < _dataPieces.Count)
        {
            var (offset, length) = _dataPieces[_nextPiece++];
            var buffer = _buffers.Rent();
            _inFlight.Enqueue((length, buffer, _image.ReadAsync(offset, length, buffer)));
        }
    }

    public void Dispose()
    {
        // Reads still in flight write into the buffers: wait for them before freeing.
        foreach (var (_, _, read) in _inFlight)
        {
            try
            {
                read.Wait();
            }
            catch (AggregateException)
            {
                // Already reported, or abandoned with the operation.
            }
        }

        _inFlight.Clear();
        _buffers.Dispose();
    }
}
