using Microsoft.Win32.SafeHandles;

namespace BlockBackup.Engine.Nbd;

/// <summary>
/// A writable view of a read-only export: writes land in a local sparse file at the same
/// offsets, one bit per 4 KiB grain says which grains the file holds, and reads take each grain
/// from the file or the base. The base (a backup) is never written. The bitmap is saved beside
/// the file (<c>.map</c>) on every flush and on close, so a kept overlay says what it holds.
/// </summary>
public sealed class CopyOnWriteOverlay : IBlockExport
{
    public const int Grain = 4096;

    private readonly IBlockExport _base;
    private readonly SafeFileHandle _file;
    private readonly ulong[] _written;
    private readonly object _writeGate = new();
    private int _disposed;

    public CopyOnWriteOverlay(IBlockExport baseExport, string path)
    {
        _base = baseExport;
        Path = System.IO.Path.GetFullPath(path);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(Path)!);
        // A new file each mount: an overlay left by an earlier mount is not this mount's writes.
        _file = File.OpenHandle(Path, FileMode.Create, FileAccess.ReadWrite, FileShare.Read);
        RandomAccess.SetLength(_file, baseExport.Size);
        _written = new ulong[((baseExport.Size + Grain - 1) / Grain + 63) / 64];
    }

    public string Path { get; }
    public string MapPath => Path + ".map";
    public long Size => _base.Size;
    public bool ReadOnly => false;
    public int PreferredBlockSize => _base.PreferredBlockSize;

    /// <summary>Bytes of the volume the overlay holds (written since the mount).</summary>
    public long WrittenBytes => _written.Sum(w => (long)System.Numerics.BitOperations.PopCount(w)) * Grain;

    public void Read(long offset, Span<byte> destination)
    {
        var position = offset;
        var end = offset + destination.Length;
        while (position < end)
        {
            // One run of grains of the same kind: one read from the file or the base.
            var inOverlay = IsWritten(position / Grain);
            var runEnd = Math.Min(end, (position / Grain + 1) * Grain);
            while (runEnd < end && IsWritten(runEnd / Grain) == inOverlay)
            {
                runEnd = Math.Min(end, runEnd + Grain);
            }

            var target = destination.Slice((int)(position - offset), (int)(runEnd - position));
            if (inOverlay)
            {
                ReadFile(target, position);
            }
            else
            {
                _base.Read(position, target);
            }

            position = runEnd;
        }
    }

    public void Write(long offset, ReadOnlySpan<byte> source)
    {
        // One writer at a time: a partial grain is read, merged and written back whole.
        lock (_writeGate)
        {
            var grain = new byte[Grain];
            var position = offset;
            var end = offset + source.Length;
            while (position < end)
            {
                var g = position / Grain;
                var grainStart = g * Grain;
                var grainLength = (int)Math.Min(Grain, Size - grainStart);
                var until = Math.Min(end, grainStart + grainLength);
                var piece = source.Slice((int)(position - offset), (int)(until - position));
                if (piece.Length < grainLength && !IsWritten(g))
                {
                    _base.Read(grainStart, grain.AsSpan(0, grainLength));
                    piece.CopyTo(grain.AsSpan((int)(position - grainStart)));
                    RandomAccess.Write(_file, grain.AsSpan(0, grainLength), grainStart);
                }
                else
                {
                    RandomAccess.Write(_file, piece, position);
                }

                Interlocked.Or(ref _written[g >> 6], 1UL << (int)(g & 63));
                position = until;
            }
        }
    }

    public void Flush()
    {
        RandomAccess.FlushToDisk(_file);
        SaveMap();
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            try
            {
                SaveMap();
            }
            finally
            {
                _file.Dispose();
                _base.Dispose();
            }
        }
    }

    private bool IsWritten(long grain) => (Volatile.Read(ref _written[grain >> 6]) & (1UL << (int)(grain & 63))) != 0;

    private void ReadFile(Span<byte> target, long position)
    {
        var done = 0;
        while (done < target.Length)
        {
            var n = RandomAccess.Read(_file, target[done..], position + done);
            if (n == 0)
            {
                throw new IOException($"The overlay '{Path}' ended at {position + done}, before the volume's end; it was truncated by something else.");
            }

            done += n;
        }
    }

    private void SaveMap()
    {
        var bytes = new byte[_written.Length * 8];
        lock (_writeGate)
        {
            Buffer.BlockCopy(_written, 0, bytes, 0, bytes.Length);
        }

        File.WriteAllBytes(MapPath, bytes);
    }
}
