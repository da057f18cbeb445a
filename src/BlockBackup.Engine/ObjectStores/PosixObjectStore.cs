using System.Runtime.CompilerServices;
using BlockBackup.Engine.Repository;

namespace BlockBackup.Engine.ObjectStores;

/// <summary>
/// A directory (local disk, NFS, SMB) as an object store, keeping the repository's durability
/// protocol: an object is written under a temporary name in its directory, flushed to disk, renamed
/// into place (without replacing when create-only) and the directory synced, so an object is
/// either complete or absent after a crash. Nothing is read, written or deleted through a
/// symbolic link, and names cannot leave the root.
/// </summary>
public sealed partial class PosixObjectStore : IObjectStore
{
    private const string TempPrefix = ".tmp-";

    public PosixObjectStore(string root)
    {
        Root = Path.GetFullPath(root);
        Properties = new(Connections: Math.Max(2, Environment.ProcessorCount), HasAtomicCreateOnly: true, Description: $"'{Root}'", CheapStat: true);
    }

    public string Root { get; }

    public ObjectStoreProperties Properties { get; }

    public async Task PutAsync(string name, Stream content, long length, PutOptions options, CancellationToken cancellationToken)
    {
        // Unbuffered: an object arrives whole (a MemoryStream copies in one write); a 64 KiB
        // FileStream buffer per object was most of what a 4 TiB backup allocated.
        Put(name, stream => content.CopyTo(stream), options, length, cancellationToken, bufferSize: 1);
        await Task.CompletedTask.ConfigureAwait(false);
    }

    /// <summary>Writes the document straight into its temporary file: once, never spooled.</summary>
    public Task<long> PutWrittenAsync(string name, Action<Stream> write, PutOptions options, CancellationToken cancellationToken) =>
        Task.FromResult(Put(name, write, options, null, cancellationToken, bufferSize: 1 << 16));

    private long Put(string name, Action<Stream> write, PutOptions options, long? expectedLength, CancellationToken cancellationToken, int bufferSize)
    {
        var path = PathOf(name);
        var dir = Path.GetDirectoryName(path)!;
        EnsureDirectory(dir);
        var temp = Path.Combine(dir, TempPrefix + Guid.NewGuid().ToString("N"));
        try
        {
            long written;
            using (var stream = AtomicFile.CreateNew(temp, bufferSize))
            {
                write(stream);
                cancellationToken.ThrowIfCancellationRequested();
                written = stream.Length;
                if (expectedLength is { } expected && written != expected)
                {
                    throw ObjectNames.ShortContent(name, expected, written);
                }

                if (!options.DeferDurability)
                {
                    AtomicFile.FlushToDisk(stream);
                }
                else if (Native.LinuxNative.IsLinux)
                {
                    // Start the writeback now, so the later FlushAsync has little left to wait for.
                    WatchWriteback();
                    Native.LinuxNative.StartWriteback(stream.SafeFileHandle);
                }
                else
                {
                    AtomicFile.FlushToDisk(stream); // no file-system-wide sync to defer to
                }
            }

            Publish(temp, path, name, options.CreateOnly);
            if (!options.DeferDurability)
            {
                AtomicFile.SyncDirectory(dir);
            }

            return written;
        }
        catch (IOException ex)
        {
            throw WriteFailed(ex, $"Writing '{path}'", path);
        }
        finally
        {
            AtomicFile.TryDelete(temp);
        }
    }

    /// <summary>
    /// Gives the written temporary its name. Create-only is one atomic step: link(2) fails with
    /// EEXIST when the name exists, NFS included; .NET's File.Move without overwrite looks first
    /// and then renames (two writers could both "create", the second replacing the first), and
    /// when that rename fails it quietly tries a link instead. Where hard links are not supported
    /// it falls back to that move.
    /// </summary>
    private void Publish(string temp, string path, string name, bool createOnly)
    {
        if (createOnly && Native.LinuxNative.IsLinux)
        {
            if (Native.LinuxNative.TryLink(temp, path, out var errno))
            {
                return; // the temporary's own name is removed by the caller
            }

            if (Native.LinuxNative.IsAlreadyExists(errno))
            {
                // NFS may answer a retransmitted link that succeeded with EEXIST: then it is this file.
                if (Native.LinuxNative.DescribeNoFollow(path) is { } named && named.Identity == Native.LinuxNative.DescribeNoFollow(temp)?.Identity)
                {
                    return;
                }

                throw ObjectNames.Exists(name, Properties.Description);
            }

            if (!Native.LinuxNative.IsLinkUnsupported(errno))
            {
                throw new IOException($"Linking '{path}' failed (errno {errno}).", errno);
            }
        }

        try
        {
            File.Move(temp, path, overwrite: !createOnly);
        }
        catch (IOException) when (createOnly && File.Exists(path))
        {
            throw ObjectNames.Exists(name, Properties.Description);
        }
    }

    public Task<Stream> GetAsync(string name, long offset = 0, long? length = null, CancellationToken cancellationToken = default)
    {
        var path = PathOf(name);
        Microsoft.Win32.SafeHandles.SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, FileOptions.SequentialScan);
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            throw ObjectNames.NotFound(name, Properties.Description);
        }

        var size = RandomAccess.GetLength(handle);
        var start = Math.Min(offset, size);
        return Task.FromResult<Stream>(new FileRangeStream(handle, start, length is { } n ? Math.Min(size, start + n) : size));
    }

    public Task<ObjectInfo?> StatAsync(string name, CancellationToken cancellationToken = default)
    {
        var file = new FileInfo(PathOf(name));
        return Task.FromResult(file.Exists && !file.Attributes.HasFlag(FileAttributes.ReparsePoint) ? new ObjectInfo(name, file.Length) : null);
    }

    public async IAsyncEnumerable<ObjectInfo> ListAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        foreach (var info in Walk(prefix, cancellationToken).OrderBy(o => o.Name, StringComparer.Ordinal))
        {
            yield return info;
        }

        await Task.CompletedTask.ConfigureAwait(false);
    }

    /// <summary>The directory order, streamed: nothing is held (a backup's directory can hold half a million objects).</summary>
    public async IAsyncEnumerable<ObjectInfo> ListUnorderedAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        foreach (var info in Walk(prefix, cancellationToken))
        {
            yield return info;
        }

        await Task.CompletedTask.ConfigureAwait(false);
    }

    /// <summary>
    /// Makes every object put with deferred durability durable (syncfs), or fails saying so:
    /// their write errors (a full NFS share is often reported only at writeback) come back
    /// through a directory handle opened before the first of them, as syncfs reports only the
    /// errors that happened after its handle was opened.
    /// </summary>
    public Task FlushAsync(CancellationToken cancellationToken = default)
    {
        if (!Native.LinuxNative.IsLinux)
        {
            return Task.CompletedTask;
        }

        Microsoft.Win32.SafeHandles.SafeFileHandle? handle;
        lock (_writebackGate)
        {
            handle = _writeback;
            _writeback = null;
        }

        using (handle ??= Native.LinuxNative.OpenDirectory(Root))
        {
            try
            {
                if (handle is not null)
                {
                    Native.LinuxNative.SyncFileSystem(handle, Root);
                }
            }
            catch (IOException ex)
            {
                throw WriteFailed(ex, $"Making the objects written to {Properties.Description} durable", Root);
            }
        }

        return Task.CompletedTask;
    }

    private readonly object _writebackGate = new();
    private Microsoft.Win32.SafeHandles.SafeFileHandle? _writeback;

    /// <summary>Opens the handle <see cref="FlushAsync"/> syncs through, before the first deferred write after the last flush.</summary>
    private void WatchWriteback()
    {
        lock (_writebackGate)
        {
            _writeback ??= Native.LinuxNative.OpenDirectory(Root);
        }
    }

    /// <summary>A write that failed, as users must act on it: a full or read-only file system by name, anything else naming the file.</summary>
    private static Errors.BackupException WriteFailed(IOException ex, string what, string path) =>
        Errors.StorageFault.Classify(ex, what)
        ?? new Errors.BackupException(Errors.BackupErrorKind.WriteError, "WriteFailed",
            $"{what} failed: {ex.Message} Check the file system it is on (its kernel log, quota, connection) and run the command again.", path, ex);

    public Task DeleteAsync(string name, CancellationToken cancellationToken = default)
    {
        var path = PathOf(name);
        try
        {
            File.Delete(path);
        }
        catch (DirectoryNotFoundException)
        {
            return Task.CompletedTask; // nothing there
        }

        // Empty directories above it go too, never the root.
        for (var dir = Path.GetDirectoryName(path)!; dir.Length > Root.Length && Directory.Exists(dir) && !Directory.EnumerateFileSystemEntries(dir).Any(); dir = Path.GetDirectoryName(dir)!)
        {
            Directory.Delete(dir);
        }

        return Task.CompletedTask;
    }

    /// <summary>
    /// Removes the temporaries of puts into <paramref name="directoryName"/> whose writer was
    /// killed (their lock is free; a put in progress holds its own). Listings never show
    /// temporaries, so nothing else would ever remove them.
    /// </summary>
    internal void RemoveAbandonedTemporaries(string directoryName) =>
        Native.HeldFile.RemoveAbandoned(PathOf(directoryName.TrimEnd('/')), TemporaryName(), failed: null);

    [System.Text.RegularExpressions.GeneratedRegex(@"^\.tmp-[0-9a-f]{32}$", System.Text.RegularExpressions.RegexOptions.CultureInvariant)]
    private static partial System.Text.RegularExpressions.Regex TemporaryName();

    /// <summary>The directory part of the prefix is walked; the rest filters names in it and below. Links and temporaries are never listed.</summary>
    private IEnumerable<ObjectInfo> Walk(string prefix, CancellationToken cancellationToken)
    {
        var slash = prefix.LastIndexOf('/');
        var pending = new Stack<(string Dir, string Relative)>();
        pending.Push((slash < 0 ? Root : PathOf(prefix[..slash]), slash < 0 ? string.Empty : prefix[..(slash + 1)]));
        while (pending.TryPop(out var at))
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (!Directory.Exists(at.Dir) || IsLink(at.Dir))
            {
                continue;
            }

            // One lstat-free pass: the entry gives its kind and size without a FileInfo per file.
            var entries = new System.IO.Enumeration.FileSystemEnumerable<(string Leaf, bool Directory, long Length)>(at.Dir,
                (ref System.IO.Enumeration.FileSystemEntry e) => (e.FileName.ToString(), e.IsDirectory, e.IsDirectory ? 0 : e.Length),
                new EnumerationOptions { RecurseSubdirectories = false, AttributesToSkip = FileAttributes.ReparsePoint, IgnoreInaccessible = false, ReturnSpecialDirectories = false })
            {
                ShouldIncludePredicate = (ref System.IO.Enumeration.FileSystemEntry e) => !e.FileName.StartsWith(TempPrefix, StringComparison.Ordinal),
            };
            foreach (var (leaf, isDirectory, length) in entries)
            {
                var name = at.Relative + leaf;
                if (isDirectory)
                {
                    // Only directories that can still hold names with the prefix.
                    if ((name + "/").StartsWith(prefix, StringComparison.Ordinal) || prefix.StartsWith(name + "/", StringComparison.Ordinal))
                    {
                        pending.Push((Path.Combine(at.Dir, leaf), name + "/"));
                    }
                }
                else if (name.StartsWith(prefix, StringComparison.Ordinal))
                {
                    yield return new ObjectInfo(name, length);
                }
            }
        }
    }

    /// <summary>The path of an object, refusing names that leave the root or pass through a link.</summary>
    private string PathOf(string name)
    {
        ObjectNames.Validate(name, Properties.Description);
        var path = Path.Combine(Root, name.Replace('/', Path.DirectorySeparatorChar));
        for (var dir = path; dir.Length > Root.Length; dir = Path.GetDirectoryName(dir)!)
        {
            if (Path.Exists(dir) && IsLink(dir))
            {
                throw new Errors.BackupException(Errors.BackupErrorKind.InvalidData, "ObjectPathIsSymbolicLink",
                    $"'{dir}' is a symbolic link; objects in {Properties.Description} are never read, written or deleted through links.", name);
            }
        }

        return path;
    }

    private void EnsureDirectory(string dir)
    {
        if (!Directory.Exists(dir))
        {
            AtomicFile.CreateDirectory(dir);
        }
    }

    private static bool IsLink(string path) => File.GetAttributes(path).HasFlag(FileAttributes.ReparsePoint);

    /// <summary>
    /// Bytes [position, end) of a file, read with positioned reads through a pooled buffer: a
    /// verification or restore opens one object after another (half a million for a 4 TiB
    /// volume), and a FileStream's own 64 KiB buffer each time was gigabytes of garbage.
    /// </summary>
    private sealed class FileRangeStream(Microsoft.Win32.SafeHandles.SafeFileHandle handle, long position, long end) : Stream
    {
        private const int BufferSize = 1 << 16;
        private byte[]? buffer;
        private int bufferStart, bufferEnd;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> destination)
        {
            if (bufferStart < bufferEnd)
            {
                var n = Math.Min(destination.Length, bufferEnd - bufferStart);
                buffer.AsSpan(bufferStart, n).CopyTo(destination);
                bufferStart += n;
                return n;
            }

            var wanted = (int)Math.Min(destination.Length, end - position);
            if (wanted <= 0)
            {
                return 0;
            }

            if (wanted >= BufferSize)
            {
                var direct = RandomAccess.Read(handle, destination[..wanted], position);
                position += direct;
                return direct;
            }

            // Small reads (a decompressor's 8 KiB) are served from one larger read.
            buffer ??= System.Buffers.ArrayPool<byte>.Shared.Rent(BufferSize);
            var got = RandomAccess.Read(handle, buffer.AsSpan(0, (int)Math.Min(BufferSize, end - position)), position);
            position += got;
            bufferStart = 0;
            bufferEnd = got;
            return got == 0 ? 0 : Read(destination);
        }

        public override ValueTask<int> ReadAsync(Memory<byte> destination, CancellationToken cancellationToken = default) =>
            ValueTask.FromResult(Read(destination.Span));

        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                handle.Dispose();
                if (buffer is not null)
                {
                    System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
                    buffer = null;
                }
            }

            base.Dispose(disposing);
        }
    }
}
