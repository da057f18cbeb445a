using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Rbd.Librbd;

namespace BlockBackup.Engine.Rbd;

/// <summary>How to reach the cluster. Only paths and the client id; keys stay in the keyring file.</summary>
public sealed record RbdConnection(string? ConfPath = null, string? ClientId = null, string? KeyringPath = null);

public sealed record RbdSnapshot(long Id, string Name, long Size, DateTime? Timestamp);

public sealed record RbdExtent(long Offset, long Length, bool Exists);

/// <summary>
/// RBD through librbd and librados (P/Invoke into the client libraries Ceph ships), not the
/// <c>rbd</c> tool: an incremental backup is a handful of metadata calls plus the changed data,
/// and with the tool each call is a process that connects to the cluster again (~0.1 s each,
/// most of a small incremental), while <c>import-diff</c> keeps one write in flight, so a
/// scattered change costs one round trip per extent. In process, one connection serves every
/// call and <c>CopyDiff</c> keeps dozens of object reads and writes in flight. The
/// connection is made on first use; every monitor and OSD operation is bounded by
/// <see cref="CommandTimeout"/> (a cluster without quorum blocks clients forever otherwise).
/// Errors name the image and the errno text, never a key.
/// </summary>
public sealed class RbdClient : IDisposable
{
    private readonly object gate = new();
    private RadosCluster? connected;
    private bool disposed;

    public RbdClient(RbdConnection connection)
    {
        Connection = connection;
        Tool = new RbdTool(connection);
    }

    /// <summary>The connection, made on first use; a failed attempt is not remembered, so a later call tries again.</summary>
    private RadosCluster Cluster
    {
        get
        {
            lock (gate)
            {
                ObjectDisposedException.ThrowIf(disposed, this);
                return connected ??= RadosCluster.Connect(Connection, CommandTimeout);
            }
        }
    }

    public RbdConnection Connection { get; }

    public TimeSpan CommandTimeout { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>The rbd tool with the same connection settings, for export-diff streams.</summary>
    public RbdTool Tool { get; }

    internal RbdImage Open(RbdImageRef image, string? snapshot = null, bool readOnly = true) =>
        RbdImage.Open(Cluster.IoContext(image.Pool, image.Namespace), image, snapshot, readOnly);

    /// <summary>Opens an image, or returns null when it (or the snapshot) does not exist.</summary>
    internal RbdImage? TryOpen(RbdImageRef image, string? snapshot = null, bool readOnly = true)
    {
        try
        {
            return Open(image, snapshot, readOnly);
        }
        catch (BackupException ex) when (ex.ErrorId == "RbdNotFound")
        {
            return null;
        }
    }

    /// <summary>Size of an image, or null when it does not exist.</summary>
    public long? ImageSize(RbdImageRef image, string? snapshot = null) => ImageInfo(image, snapshot)?.Size;

    /// <summary>Size and RADOS object size of an image, or null when it does not exist.</summary>
    public (long Size, long ObjectSize)? ImageInfo(RbdImageRef image, string? snapshot = null)
    {
        using var opened = TryOpen(image, snapshot);
        return opened?.Stat();
    }

    public unsafe IReadOnlyList<string> ListImages(string pool, string? ns = null)
    {
        var ioctx = Cluster.IoContext(RbdNames.Validate(pool, "pool"), ns is null ? null : RbdNames.Validate(ns, "namespace"));
        nuint max = 64;
        while (true)
        {
            var specs = new CephNative.ImageSpec[max];
            fixed (CephNative.ImageSpec* p = specs)
            {
                var rc = CephNative.rbd_list2(ioctx, p, ref max);
                if (rc == -CephError.ERANGE)
                {
                    continue; // max now holds the count needed
                }

                CephError.Check(rc, "Listing the images of pool", ns is null ? pool : $"{pool}/{ns}");
                try
                {
                    var names = new List<string>((int)max);
                    for (nuint i = 0; i < max; i++)
                    {
                        names.Add(System.Runtime.InteropServices.Marshal.PtrToStringUTF8(specs[i].Name)!);
                    }

                    return names;
                }
                finally
                {
                    CephNative.rbd_image_spec_list_cleanup(p, max);
                }
            }
        }
    }

    public IReadOnlyList<RbdSnapshot> Snapshots(RbdImageRef image)
    {
        using var opened = Open(image);
        return opened.Snapshots();
    }

    /// <summary>Creates an image with the cluster's default features (as <c>rbd create</c>).</summary>
    public void CreateImage(RbdImageRef image, long size)
    {
        var ioctx = Cluster.IoContext(image.Pool, image.Namespace);
        CephNative.rbd_image_options_create(out var options);
        try
        {
            CephError.Check(CephNative.rbd_create4(ioctx, image.Image, (ulong)Math.Max(size, 1), options), "Creating RBD image", image.Spec);
        }
        finally
        {
            CephNative.rbd_image_options_destroy(options);
        }
    }

    /// <summary>Removes an image, retrying while another client's watch still holds it (as Cinder does).</summary>
    public void RemoveImage(RbdImageRef image)
    {
        var ioctx = Cluster.IoContext(image.Pool, image.Namespace);
        for (var attempt = 1; ; attempt++)
        {
            var rc = CephNative.rbd_remove(ioctx, image.Image);
            if (rc != -CephError.EBUSY || attempt >= 8)
            {
                CephError.Check(rc, "Removing RBD image", image.Spec);
                return;
            }

            Thread.Sleep(TimeSpan.FromSeconds(5));
        }
    }

    public void Resize(RbdImageRef image, long size)
    {
        using var opened = Open(image, readOnly: false);
        opened.Resize(size);
    }

    public void CreateSnapshot(RbdImageRef image, string snapshot)
    {
        using var opened = Open(image, readOnly: false);
        opened.CreateSnapshot(snapshot);
    }

    public void RemoveSnapshot(RbdImageRef image, string snapshot)
    {
        using var opened = Open(image, readOnly: false);
        opened.RemoveSnapshot(snapshot);
    }

    /// <summary>Allocated extents (from image creation, or since <paramref name="fromSnapshot"/>).</summary>
    public IReadOnlyList<RbdExtent> Diff(RbdImageRef image, string? snapshot = null, string? fromSnapshot = null, bool wholeObject = false)
    {
        using var opened = Open(image, snapshot);
        var (size, _) = opened.Stat();
        return opened.Diff(fromSnapshot is null ? null : RbdNames.Validate(fromSnapshot, "snapshot"), wholeObject, 0, size, CancellationToken.None);
    }

    public IReadOnlyDictionary<string, string> ImageMetadata(RbdImageRef image)
    {
        using var opened = Open(image);
        return opened.Metadata();
    }

    public void SetImageMetadata(RbdImageRef image, string key, string value)
    {
        using var opened = Open(image, readOnly: false);
        opened.SetMetadata(key, value);
    }

    public void RemoveImageMetadata(RbdImageRef image, string key)
    {
        using var opened = Open(image, readOnly: false);
        opened.RemoveMetadata(key);
    }

    /// <summary>
    /// What <c>rbd export-diff [--from-snap F] src@snap - | rbd import-diff - target</c> does, in
    /// process and without temporary files: the target must hold <paramref name="fromSnapshot"/>
    /// (from nothing: the target must be empty) and must not hold <paramref name="snapshot"/>; it
    /// is resized to the source's size at the snapshot, receives the changed extents (removed
    /// ones as zeros), and gets the end snapshot. Failures are "RbdDiffFailed".
    /// </summary>
    public ExtentCopyStats CopyDiff(RbdImageRef source, string snapshot, string? fromSnapshot, RbdImageRef target,
        IProgress<OperationProgress>? progress, OperationPhase phase, CancellationToken cancellationToken)
    {
        try
        {
            using var to = Open(target, readOnly: false);
            return CopyDiff(source, snapshot, fromSnapshot, to, progress, phase, cancellationToken);
        }
        catch (BackupException ex) when (ex.ErrorId is not ("RbdDiffFailed" or "RbdTimeout" or "RbdAccessDenied"))
        {
            throw DiffFailed(source, snapshot, fromSnapshot, target, ex);
        }
    }

    /// <summary><see cref="CopyDiff(RbdImageRef, string, string?, RbdImageRef, IProgress{OperationProgress}?, OperationPhase, CancellationToken)"/> into an image the caller holds open (and keeps using).</summary>
    internal ExtentCopyStats CopyDiff(RbdImageRef source, string snapshot, string? fromSnapshot, RbdImage to,
        IProgress<OperationProgress>? progress, OperationPhase phase, CancellationToken cancellationToken)
    {
        var target = to.Reference;
        try
        {
            using var from = Open(source, snapshot);
            var (size, objectSize) = from.Stat();
            var targetSnapshots = to.Snapshots();
            if (fromSnapshot is not null && !targetSnapshots.Any(s => s.Name == fromSnapshot))
            {
                throw new BackupException(BackupErrorKind.InvalidOperation, "RbdStartSnapshotMissing", $"the start snapshot '{fromSnapshot}' is not on {target}", target.Spec);
            }

            if (targetSnapshots.Any(s => s.Name == snapshot))
            {
                throw new BackupException(BackupErrorKind.InvalidOperation, "RbdEndSnapshotExists", $"the end snapshot '{snapshot}' already exists on {target}", target.Spec);
            }

            var extents = fromSnapshot is null ? from.Diff(null, wholeObject: false, 0, size, cancellationToken) : from.Changes(fromSnapshot, size, cancellationToken);
            if (to.Stat().Size != size)
            {
                to.Resize(size);
            }

            var throttle = new ProgressThrottle(progress, phase, extents.Sum(e => e.Length), $"{source} -> {target}");
            var stats = RbdExtentCopy.Run(from, extents, objectSize, new RbdImageSink(to), sinkIsEmpty: fromSnapshot is null, throttle, cancellationToken);
            to.Flush();
            to.CreateSnapshot(snapshot);
            return stats;
        }
        catch (BackupException ex) when (ex.ErrorId is not ("RbdTimeout" or "RbdAccessDenied"))
        {
            throw DiffFailed(source, snapshot, fromSnapshot, target, ex);
        }
    }

    private static BackupException DiffFailed(RbdImageRef source, string snapshot, string? fromSnapshot, RbdImageRef target, BackupException ex) =>
        new(BackupErrorKind.WriteError, "RbdDiffFailed",
            $"Differential transfer {source.SnapSpec(snapshot)}{(fromSnapshot is null ? "" : $" (from {fromSnapshot})")} -> {target} failed: {ex.Message}", target.Spec, ex);

    public void Dispose()
    {
        lock (gate)
        {
            connected?.Dispose();
            connected = null;
            disposed = true;
        }
    }
}
