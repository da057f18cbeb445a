using System.Runtime.InteropServices;
using System.Text;

namespace BlockBackup.Engine.Rbd.Librbd;

/// <summary>
/// An open RBD image (rbd_image_t), at its head or at a snapshot. Synchronous calls for
/// metadata; asynchronous reads and writes (completions signalled from librbd's threads) for
/// data, so a copy keeps many object operations in flight from one thread.
/// </summary>
internal sealed unsafe class RbdImage : IDisposable
{
    private IntPtr handle;

    private RbdImage(IntPtr handle, RbdImageRef reference, string? snapshot)
    {
        this.handle = handle;
        Reference = reference;
        Snapshot = snapshot;
    }

    public RbdImageRef Reference { get; }

    public string? Snapshot { get; }

    public string Name => Snapshot is null ? Reference.Spec : Reference.SnapSpec(Snapshot);

    public static RbdImage Open(IntPtr ioctx, RbdImageRef image, string? snapshot, bool readOnly)
    {
        var result = readOnly
            ? CephNative.rbd_open_read_only(ioctx, image.Image, out var h, snapshot)
            : CephNative.rbd_open(ioctx, image.Image, out h, snapshot);
        CephError.Check(result, "Opening RBD image", snapshot is null ? image.Spec : image.SnapSpec(snapshot));
        return new RbdImage(h, image, snapshot);
    }

    private IntPtr Handle => handle != IntPtr.Zero ? handle : throw new ObjectDisposedException(Name);

    public (long Size, long ObjectSize) Stat()
    {
        CephError.Check(CephNative.rbd_stat(Handle, out var info, (nuint)sizeof(CephNative.ImageInfo)), "Reading the size of", Name);
        return ((long)info.Size, (long)info.ObjectSize);
    }

    /// <summary>True when the image keeps a valid fast-diff object map, so whole-object diffs need no per-object queries.</summary>
    public bool HasFastDiff =>
        CephNative.rbd_get_features(Handle, out var features) == 0 && (features & CephNative.FeatureFastDiff) != 0
        && CephNative.rbd_get_flags(Handle, out var flags) == 0 && (flags & (CephNative.FlagObjectMapInvalid | CephNative.FlagFastDiffInvalid)) == 0;

    /// <summary>
    /// The exact extents that changed since <paramref name="fromSnapshot"/>. An exact diff asks
    /// every object for its snapshot history; with fast-diff the object map first says which
    /// objects changed at all, and when those are few only they are asked.
    /// </summary>
    public List<RbdExtent> Changes(string fromSnapshot, long size, CancellationToken cancellationToken)
    {
        if (HasFastDiff)
        {
            var objects = Diff(fromSnapshot, wholeObject: true, 0, size, cancellationToken);
            if (objects.Sum(e => e.Length) <= size / 8)
            {
                var exact = new List<RbdExtent>();
                foreach (var range in objects)
                {
                    exact.AddRange(Diff(fromSnapshot, wholeObject: false, range.Offset, range.Length, cancellationToken));
                }

                return exact;
            }
        }

        return Diff(fromSnapshot, wholeObject: false, 0, size, cancellationToken);
    }

    public void Resize(long size) => CephError.Check(CephNative.rbd_resize(Handle, (ulong)size), $"Resizing to {size} bytes", Name);

    public void Flush() => CephError.Check(CephNative.rbd_flush(Handle), "Flushing writes to", Name);

    public IReadOnlyList<RbdSnapshot> Snapshots()
    {
        var max = 16;
        while (true)
        {
            var snaps = new CephNative.SnapInfo[max];
            fixed (CephNative.SnapInfo* p = snaps)
            {
                var count = CephNative.rbd_snap_list(Handle, p, ref max);
                if (count == -CephError.ERANGE)
                {
                    continue; // max now holds the size needed
                }

                CephError.Check(count, "Listing snapshots of", Name);
                try
                {
                    var result = new List<RbdSnapshot>(count);
                    for (var i = 0; i < count; i++)
                    {
                        DateTime? time = CephNative.rbd_snap_get_timestamp(Handle, snaps[i].Id, out var ts) == 0
                            ? DateTime.UnixEpoch.AddSeconds(ts.Seconds).AddTicks(ts.Nanoseconds / 100)
                            : null;
                        result.Add(new RbdSnapshot((long)snaps[i].Id, Marshal.PtrToStringUTF8(snaps[i].Name)!, (long)snaps[i].Size, time));
                    }

                    return result;
                }
                finally
                {
                    CephNative.rbd_snap_list_end(p);
                }
            }
        }
    }

    public void CreateSnapshot(string name) => CephError.Check(CephNative.rbd_snap_create(Handle, RbdNames.Validate(name, "snapshot")), "Creating snapshot", Reference.SnapSpec(name));

    public void RemoveSnapshot(string name) => CephError.Check(CephNative.rbd_snap_remove(Handle, RbdNames.Validate(name, "snapshot")), "Removing snapshot", Reference.SnapSpec(name));

    public IReadOnlyDictionary<string, string> Metadata()
    {
        const int page = 1024;
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        var start = string.Empty;
        nuint keysSize = 16 << 10, valuesSize = 64 << 10;
        while (true)
        {
            var keys = new byte[keysSize];
            var values = new byte[valuesSize];
            int rc;
            fixed (byte* k = keys)
            fixed (byte* v = values)
            {
                rc = CephNative.rbd_metadata_list(Handle, start, page, k, ref keysSize, v, ref valuesSize);
            }

            if (rc == -CephError.ERANGE)
            {
                continue; // the sizes needed were written back
            }

            CephError.Check(rc, "Reading the metadata of", Name);
            var keyList = SplitNulTerminated(keys.AsSpan(0, (int)keysSize));
            var valueList = SplitNulTerminated(values.AsSpan(0, (int)valuesSize));
            for (var i = 0; i < keyList.Count; i++)
            {
                result[keyList[i]] = i < valueList.Count ? valueList[i] : string.Empty;
            }

            if (keyList.Count < page)
            {
                return result;
            }

            start = keyList[^1]; // librbd lists the keys after this one
        }
    }

    public void SetMetadata(string key, string value) => CephError.Check(CephNative.rbd_metadata_set(Handle, key, value), $"Setting metadata key '{key}' of", Name);

    /// <summary>Removes a metadata key; a key that is not there is not an error.</summary>
    public void RemoveMetadata(string key)
    {
        var rc = CephNative.rbd_metadata_remove(Handle, key);
        if (rc != -CephError.ENOENT)
        {
            CephError.Check(rc, $"Removing metadata key '{key}' of", Name);
        }
    }

    private static List<string> SplitNulTerminated(ReadOnlySpan<byte> bytes)
    {
        var list = new List<string>();
        while (!bytes.IsEmpty)
        {
            var end = bytes.IndexOf((byte)0);
            if (end < 0)
            {
                end = bytes.Length;
            }

            if (end > 0)
            {
                list.Add(Encoding.UTF8.GetString(bytes[..end]));
            }

            bytes = end < bytes.Length ? bytes[(end + 1)..] : [];
        }

        return list;
    }

    /// <summary>
    /// The extents of this image (at its snapshot) that differ from <paramref name="fromSnapshot"/>
    /// (null: from an empty image), with <c>Exists</c> false where data was removed. With
    /// <paramref name="wholeObject"/> whole objects are reported, from the object map when the
    /// image has fast-diff.
    /// </summary>
    public List<RbdExtent> Diff(string? fromSnapshot, bool wholeObject, long offset, long length, CancellationToken cancellationToken)
    {
        var state = new DiffState(cancellationToken);
        var gc = GCHandle.Alloc(state);
        try
        {
            var rc = CephNative.rbd_diff_iterate2(Handle, fromSnapshot, (ulong)offset, (ulong)length, 1, wholeObject ? (byte)1 : (byte)0, &OnExtent, GCHandle.ToIntPtr(gc));
            cancellationToken.ThrowIfCancellationRequested();
            CephError.Check(rc, fromSnapshot is null ? "Listing the allocated extents of" : $"Listing what changed since '{fromSnapshot}' in", Name);
            return state.Extents;
        }
        finally
        {
            gc.Free();
        }
    }

    private sealed class DiffState(CancellationToken cancellationToken)
    {
        public readonly List<RbdExtent> Extents = [];
        public readonly CancellationToken Cancellation = cancellationToken;
    }

    [UnmanagedCallersOnly]
    private static int OnExtent(ulong offset, nuint length, int exists, IntPtr argument)
    {
        var state = (DiffState)GCHandle.FromIntPtr(argument).Target!;
        if (state.Cancellation.IsCancellationRequested)
        {
            return -125; // ECANCELED: stops the iteration
        }

        var extents = state.Extents;
        // librbd reports per object; join neighbours of the same kind.
        if (extents.Count > 0 && extents[^1] is var last && last.Offset + last.Length == (long)offset && last.Exists == (exists != 0))
        {
            extents[^1] = last with { Length = last.Length + (long)length };
        }
        else
        {
            extents.Add(new RbdExtent((long)offset, (long)length, exists != 0));
        }

        return 0;
    }

    /// <summary>Reads into <paramref name="buffer"/> (native memory that outlives the call); returns the bytes read.</summary>
    public Task<long> ReadAsync(long offset, int length, IntPtr buffer) =>
        Submit(c => CephNative.rbd_aio_read(Handle, (ulong)offset, (nuint)length, (byte*)buffer, c), "Reading", offset, length);

    public Task<long> WriteAsync(long offset, int length, IntPtr buffer) =>
        Submit(c => CephNative.rbd_aio_write(Handle, (ulong)offset, (nuint)length, (byte*)buffer, c), "Writing", offset, length);

    /// <summary>Makes a range read as zeros (deallocating whole objects), unlike discard, which may skip partial objects.</summary>
    public Task<long> WriteZeroesAsync(long offset, long length) =>
        Submit(c => CephNative.rbd_aio_write_zeroes(Handle, (ulong)offset, (nuint)length, c, 0, 0), "Zeroing", offset, length);

    private Task<long> Submit(Func<IntPtr, int> start, string what, long offset, long length)
    {
        var operation = new AioOperation(this, what, offset, length);
        var gc = GCHandle.Alloc(operation);
        var rc = CephNative.rbd_aio_create_completion(GCHandle.ToIntPtr(gc), &OnComplete, out var completion);
        if (rc < 0)
        {
            gc.Free();
            CephError.Check(rc, "Starting I/O on", Name);
        }

        rc = start(completion);
        if (rc < 0)
        {
            // Not queued: the callback will never run.
            CephNative.rbd_aio_release(completion);
            gc.Free();
            return Task.FromException<long>(operation.Failure(rc));
        }

        return operation.Task;
    }

    private sealed class AioOperation(RbdImage image, string what, long offset, long length)
        : TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously)
    {
        public Exception Failure(long rc) => CephError.Error(rc, $"{what} {length} bytes at offset {offset} of", image.Name);
    }

    /// <summary>Runs on a librbd thread: record the result and return at once (continuations run on the thread pool).</summary>
    [UnmanagedCallersOnly]
    private static void OnComplete(IntPtr completion, IntPtr argument)
    {
        var gc = GCHandle.FromIntPtr(argument);
        var operation = (AioOperation)gc.Target!;
        gc.Free();
        try
        {
            long rc = CephNative.rbd_aio_get_return_value(completion);
            CephNative.rbd_aio_release(completion);
            if (rc < 0)
            {
                operation.TrySetException(operation.Failure(rc));
            }
            else
            {
                operation.TrySetResult(rc);
            }
        }
        catch (Exception ex)
        {
            operation.TrySetException(ex); // never let an exception cross into native code
        }
    }

    public void Dispose()
    {
        var h = Interlocked.Exchange(ref handle, IntPtr.Zero);
        if (h != IntPtr.Zero)
        {
            CephNative.rbd_close(h);
        }
    }
}
