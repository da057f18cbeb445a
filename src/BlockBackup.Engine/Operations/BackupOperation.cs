using System.Collections.Concurrent;
using System.Diagnostics;
using System.Security.Cryptography;
using BlockBackup.Engine.Compression;
using BlockBackup.Engine.Consistency;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Format;
using BlockBackup.Engine.Hashing;
using BlockBackup.Engine.Native;
using BlockBackup.Engine.Repository;
using BlockBackup.Engine.Volumes;

namespace BlockBackup.Engine.Operations;

/// <summary>
/// Full and incremental backups of a file or block device into a repository, in Cinder's format.
/// Object ranges are processed in parallel; each buffer is read once and hashed once (SHA-256 per
/// block, MD5 per object in the same pass over memory), holes are never read and all-zero blocks
/// are never hashed or compressed. Nothing is visible until the metadata is renamed into place.
/// </summary>
public static class BackupOperation
{
    public static BackupResult Run(BackupRepository repository, BackupRequest request, IProgress<OperationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        Validate(request);
        var clock = Stopwatch.StartNew();
        var resolved = VolumeIdentity.ResolvePath(request.SourcePath);
        using var volume = VolumeSource.Open(resolved);
        var volumeId = request.VolumeId ?? VolumeIdentity.ForPath(resolved);

        using var volumeLock = RepositoryLock.Acquire(repository.Root, volumeId, "backup", repository.LockTimeout, cancellationToken);
        var parent = ChooseParent(repository, request, volumeId, volume.Size);
        progress?.Report(new OperationProgress(OperationPhase.Preparing, 0, volume.Size, $"Taking a point-in-time view of {resolved}"));
        using var view = ConsistentView.Acquire(resolved, volume.IsBlockDevice, request.Force, request.UseSnapshot);
        using var snapshot = view.ReadPath == resolved ? null : VolumeSource.Open(view.ReadPath);
        var reader = snapshot ?? volume;

        var backupId = Guid.NewGuid();
        var started = DateTime.UtcNow;
        var prefix = ObjectNaming.Prefix(volumeId, started, backupId);
        var containerRelative = ObjectNaming.DefaultContainer(backupId);
        var container = Path.Combine(repository.Root, containerRelative);
        AtomicFile.CreateDirectory(container);
        BackupJob? job = null;
        try
        {
            new ContainerSummary { State = ContainerSummary.StateCreating, BackupId = backupId, VolumeId = volumeId, Prefix = prefix }.Write(container);
            job = new BackupJob(repository, request, reader, parent, container, prefix, volume.Size, progress, cancellationToken);
            var written = job.Run();

            progress?.Report(new OperationProgress(OperationPhase.Committing, volume.Size, volume.Size, "Writing hash list and metadata"));
            var createdAt = CinderTime.Format(started);
            var sha256FileChecksum = AtomicFile.Write(Path.Combine(container, ObjectNaming.Sha256FileName(prefix)), s =>
                Sha256File.Write(s, new Sha256FileHeader(backupId, volumeId, request.Name, request.Description, createdAt, request.HashBlockSize), job.Hashes, cancellationToken));
            var encoder = job.Encoder;
            var metadata = new BackupMetadata
            {
                BackupId = backupId,
                VolumeId = volumeId,
                Name = request.Name,
                Description = request.Description,
                CreatedAt = createdAt,
                ParentId = parent?.Id,
                Objects = written,
                Extra = new BlockBackupExtra
                {
                    VolumeSize = volume.Size,
                    Source = resolved,
                    Consistency = ConsistencyNames.ToRecordName(view.Method),
                    Compression = CompressionNames.ToMetadataName(encoder.Algorithm),
                    CompressionLevel = encoder.Level,
                    ObjectSize = request.ObjectSize,
                    HashBlockSize = request.HashBlockSize,
                    StartedUtc = started,
                    CompletedUtc = DateTime.UtcNow,
                    StoredBytes = job.StoredBytes,
                    ObjectsSha256 = MetadataSerializer.ObjectsChecksum(written),
                    Sha256FileSha256 = sha256FileChecksum,
                    Tool = "BlockBackup " + typeof(BackupOperation).Assembly.GetName().Version?.ToString(3),
                },
            };
            var metadataPath = Path.Combine(container, ObjectNaming.MetadataName(prefix));
            cancellationToken.ThrowIfCancellationRequested();
            AtomicFile.Write(metadataPath, s => { MetadataSerializer.Write(s, metadata); return 0; });
            AtomicFile.SyncDirectory(container);

            // From here on the backup exists; the summary is only a cache.
            var info = repository.ToInfo(container, prefix, metadata, metadataPath);
            var file = new FileInfo(metadataPath);
            new ContainerSummary
            {
                State = ContainerSummary.StateAvailable, BackupId = backupId, VolumeId = volumeId, Prefix = prefix,
                MetadataLength = file.Length, MetadataMtimeTicks = file.LastWriteTimeUtc.Ticks, Info = info,
            }.Write(container);
            progress?.Report(new OperationProgress(OperationPhase.Committing, volume.Size, volume.Size, "Done"));
            return new BackupResult
            {
                Backup = info,
                Parent = parent,
                Consistency = view.Method,
                ConsistencyDetail = view.Detail,
                BytesRead = job.BytesRead,
                BytesBackedUp = written.Sum(o => o.Length),
                Duration = clock.Elapsed,
            };
        }
        catch
        {
            RemovePartial(repository.Root, container);
            throw;
        }
        finally
        {
            job?.Hashes.Dispose();
        }
    }

    private static void Validate(BackupRequest r)
    {
        if (r.HashBlockSize <= 0 || r.HashBlockSize > (64 << 20) || r.ObjectSize <= 0 || r.ObjectSize % r.HashBlockSize != 0 || r.ObjectSize > (256L << 20))
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidObjectSize",
                $"Object size {r.ObjectSize} must be a positive multiple of the hash block size {r.HashBlockSize}, at most 256 MiB.", r.ObjectSize);
        }

        if (r.ParentId is not null && !r.Incremental)
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "ParentWithoutIncremental", "A parent backup was named but the backup is not incremental.", r.ParentId);
        }
    }

    /// <summary>Cinder's rules: the named parent, else the newest available backup of the volume; same hash block size; the volume must not have grown.</summary>
    private static BackupInfo? ChooseParent(BackupRepository repository, BackupRequest request, Guid volumeId, long volumeSize)
    {
        if (!request.Incremental)
        {
            return null;
        }

        BackupInfo parent;
        if (request.ParentId is { } parentId)
        {
            parent = repository.Get(parentId);
            if (parent.VolumeId != volumeId)
            {
                throw new BackupException(BackupErrorKind.InvalidArgument, "ParentOfAnotherVolume",
                    $"Backup {parentId} is a backup of volume {parent.VolumeId}, not of {volumeId}; an incremental must use a backup of the same volume as parent.", parentId);
            }
        }
        else
        {
            parent = repository.FindLatest(volumeId) ?? throw new BackupException(BackupErrorKind.InvalidOperation, "NoParentBackup",
                $"No available backup of volume {volumeId} exists in '{repository.Root}' to base an incremental backup on. Make a full backup first (without Incremental).", volumeId);
        }

        if (volumeSize > parent.VolumeSize)
        {
            throw new BackupException(BackupErrorKind.InvalidOperation, "VolumeGrew",
                $"The volume grew from {parent.VolumeSize} to {volumeSize} bytes since backup {parent.Id}; an incremental cannot describe that (as in Cinder). Do a full backup.", parent.Id);
        }

        return parent;
    }

    private static void RemovePartial(string root, string container)
    {
        try
        {
            if (Directory.Exists(container))
            {
                Directory.Delete(container, recursive: true);
            }

            for (var dir = Path.GetDirectoryName(container)!; dir.Length > root.Length && Directory.Exists(dir) && !Directory.EnumerateFileSystemEntries(dir).Any(); dir = Path.GetDirectoryName(dir)!)
            {
                Directory.Delete(dir);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Left as an incomplete backup; RemoveIncomplete deletes it later.
        }
    }

    /// <summary>The data phase of one backup.</summary>
    private sealed class BackupJob
    {
        private readonly BackupRepository _repository;
        private readonly BackupRequest _request;
        private readonly VolumeSource _source;
        private readonly BackupInfo? _parent;
        private readonly string _container;
        private readonly string _prefix;
        private readonly long _size;
        private readonly IProgress<OperationProgress>? _progress;
        private readonly CancellationToken _cancel;
        private readonly ConcurrentBag<Buffers> _pool = new();
        private readonly ConcurrentDictionary<int, EncodedZeros> _zeroObjects = new();
        private readonly ConcurrentBag<PendingObject> _pending = new();
        private BlockHashList? _parentHashes;
        private long _bytesRead;
        private long _storedBytes;

        public BackupJob(BackupRepository repository, BackupRequest request, VolumeSource source, BackupInfo? parent, string container, string prefix, long size, IProgress<OperationProgress>? progress, CancellationToken cancel)
        {
            _repository = repository;
            _request = request;
            _source = source;
            _parent = parent;
            _container = container;
            _prefix = prefix;
            _size = size;
            _progress = progress;
            _cancel = cancel;
            Encoder = new ObjectEncoder(request.Compression, request.CompressionLevel);
            Hashes = BlockHashList.Create(BlockCount(size, request.HashBlockSize), Path.Combine(repository.Root, ".blockbackup"));
        }

        public ObjectEncoder Encoder { get; }
        public BlockHashList Hashes { get; }
        public long BytesRead => _bytesRead;
        public long StoredBytes => _storedBytes;

        private sealed record PendingObject(string TempPath, long Offset, long Length, CompressionAlgorithm Compression, string Md5);

        private sealed record EncodedZeros(byte[]? Encoded, CompressionAlgorithm Compression, string Md5);

        private sealed class Buffers(int objectSize, int blocks)
        {
            public readonly byte[] Data = new byte[objectSize];
            public readonly byte[] Encoded = new byte[objectSize];
            public readonly byte[] Hashes = new byte[blocks * BlockHashList.HashSize];
            public readonly byte[] ParentHashes = new byte[blocks * BlockHashList.HashSize];
            public readonly bool[] Zero = new bool[blocks];
            public readonly List<(int Start, int End)> DataRanges = new();
        }

        /// <summary>Shared all-zero source for hole-only objects stored raw (compression "none").</summary>
        private static readonly byte[] ZeroSource = new byte[BackupRequest.DefaultObjectSize];

        private static long BlockCount(long size, int block) => (size + block - 1) / block;

        /// <summary>Zero runs at least this long are stored as separate zero objects.</summary>
        private const int MinZeroObject = 256 * 1024;

        public List<ObjectDescriptor> Run()
        {
            try
            {
                if (_parent is not null)
                {
                    _progress?.Report(new OperationProgress(OperationPhase.Preparing, 0, _size, $"Reading the hash list of parent backup {_parent.Id}"));
                    var parentMeta = _repository.ReadMetadata(_parent);
                    var (header, hashes) = Sha256File.Read(_repository.Sha256FilePath(_parent), _parent.Id, parentMeta.Extra?.Sha256FileSha256, Path.Combine(_repository.Root, ".blockbackup"), _cancel);
                    _parentHashes = hashes;
                    if (header.ChunkSize != _request.HashBlockSize)
                    {
                        throw new BackupException(BackupErrorKind.InvalidOperation, "HashBlockSizeChanged",
                            $"The hash block size changed since backup {_parent.Id} ({header.ChunkSize} → {_request.HashBlockSize}); do a full backup.", _parent.Id);
                    }
                }

                var ranges = (int)((_size + _request.ObjectSize - 1) / _request.ObjectSize);
                var throttle = new ProgressThrottle(_progress, OperationPhase.Reading, _size, $"Backing up {_source.Path}");
                var options = new ParallelOptions { MaxDegreeOfParallelism = _request.Workers ?? Environment.ProcessorCount, CancellationToken = _cancel };
                var indices = System.Collections.Concurrent.Partitioner.Create(Enumerable.Range(0, ranges), EnumerablePartitionerOptions.NoBuffering);
                Parallel.ForEach(indices, options, index =>
                {
                    _cancel.ThrowIfCancellationRequested();
                    var length = ProcessRange(index);
                    throttle.Add(length);
                });
                throttle.Complete();
                return Commit();
            }
            catch (AggregateException ex) when (ex.InnerExceptions.Count >= 1)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(ex.InnerExceptions[0]).Throw();
                throw;
            }
            finally
            {
                _parentHashes?.Dispose();
            }
        }

        /// <summary>Renames the temporary objects to their Cinder names, numbered in offset order.</summary>
        private List<ObjectDescriptor> Commit()
        {
            // Cinder numbers objects with %05d, which simply grows past 99999; so do we.
            var ordered = _pending.OrderBy(p => p.Offset).ToList();

            // One filesystem-wide sync makes every object durable before anything refers to it
            // (their writeback was started as each was written, so little is left to wait for).
            AtomicFile.SyncFilesystem(_container);

            var result = new List<ObjectDescriptor>(ordered.Count);
            for (var i = 0; i < ordered.Count; i++)
            {
                _cancel.ThrowIfCancellationRequested();
                var p = ordered[i];
                var name = ObjectNaming.ObjectName(_prefix, i + 1);
                File.Move(p.TempPath, Path.Combine(_container, name));
                result.Add(new ObjectDescriptor(name, p.Offset, p.Length, p.Compression, p.Md5));
            }

            return result;
        }

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)] // hot loop: skip tier-0 code
        private long ProcessRange(int index)
        {
            var objectSize = (int)_request.ObjectSize;
            var blockSize = _request.HashBlockSize;
            var offset = (long)index * objectSize;
            var length = (int)Math.Min(objectSize, _size - offset);
            var buffers = _pool.TryTake(out var b) ? b : new Buffers(objectSize, objectSize / blockSize);
            try
            {
                var data = buffers.Data.AsSpan(0, length);
                Interlocked.Add(ref _bytesRead, _source.ReadSparse(data, offset, buffers.DataRanges));
                var holesOnly = buffers.DataRanges.Count == 0;
                var blocks = (int)BlockCount(length, blockSize);
                var hashes = buffers.Hashes.AsSpan(0, blocks * BlockHashList.HashSize);
                var range = 0;
                for (var k = 0; k < blocks; k++)
                {
                    var block = data.Slice(k * blockSize, Math.Min(blockSize, length - k * blockSize));
                    // Blocks that lie entirely in a hole are zero without looking at them.
                    var blockStart = k * blockSize;
                    while (range < buffers.DataRanges.Count && buffers.DataRanges[range].End <= blockStart)
                    {
                        range++;
                    }

                    var inHole = range >= buffers.DataRanges.Count || buffers.DataRanges[range].Start >= blockStart + block.Length;
                    var zero = inHole || ZeroBlock.IsZero(block);
                    buffers.Zero[k] = zero;
                    if (zero)
                    {
                        ZeroBlock.Sha256(block.Length).CopyTo(hashes.Slice(k * 32, 32));
                    }
                    else
                    {
                        SHA256.HashData(block, hashes.Slice(k * 32, 32));
                    }
                }

                var firstBlock = offset / blockSize;
                Hashes.Set(firstBlock, hashes);

                if (holesOnly)
                {
                    // The buffer was not filled; never hand its stale bytes to the writer.
                    data = length <= ZeroSource.Length ? ZeroSource.AsSpan(0, length) : new byte[length];
                }

                // Full backup: every block goes into an object. Incremental: only runs of blocks
                // whose hash differs from the parent's at the same index (Cinder's rule).
                var parentBlocks = 0;
                var parentHashes = Span<byte>.Empty;
                if (_parentHashes is not null)
                {
                    parentBlocks = (int)Math.Clamp(_parentHashes.Count - firstBlock, 0, blocks);
                    parentHashes = buffers.ParentHashes.AsSpan(0, parentBlocks * 32);
                    _parentHashes.Get(firstBlock, parentHashes);
                }

                var part = 0;
                var k2 = 0;
                while (k2 < blocks)
                {
                    if (SameAsParent(hashes, parentHashes, k2))
                    {
                        k2++;
                        continue;
                    }

                    var start = k2;
                    while (k2 < blocks && !SameAsParent(hashes, parentHashes, k2))
                    {
                        k2++;
                    }

                    part = WriteExtent(index, part, offset, data, start, k2, buffers);
                }

                return length;
            }
            finally
            {
                _pool.Add(buffers);
            }
        }

        /// <summary>True when block k's hash equals the parent's (never for a full backup: no parent hashes).</summary>
        private static bool SameAsParent(ReadOnlySpan<byte> hashes, ReadOnlySpan<byte> parentHashes, int k) =>
            (k + 1) * 32 <= parentHashes.Length && hashes.Slice(k * 32, 32).SequenceEqual(parentHashes.Slice(k * 32, 32));

        /// <summary>
        /// Writes blocks [first, end) of a range as objects. Long runs of zero blocks become
        /// objects of their own, whose encoding and MD5 are computed once per length: MD5 has no
        /// shortcut for zeros, so hashing them inside data objects would cost as much as data.
        /// Objects stay block-aligned and never cross the range (Cinder's incremental rule).
        /// </summary>
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)] // hot loop: skip tier-0 code
        private int WriteExtent(int index, int part, long rangeOffset, ReadOnlySpan<byte> data, int first, int end, Buffers buffers)
        {
            var blockSize = _request.HashBlockSize;
            var length = data.Length;
            int Byte(int block) => Math.Min(block * blockSize, length);
            var pos = first;
            while (pos < end)
            {
                // Find the next zero run long enough to stand alone.
                var runStart = -1;
                var runEnd = -1;
                for (var k = pos; k < end;)
                {
                    if (!buffers.Zero[k])
                    {
                        k++;
                        continue;
                    }

                    var z = k;
                    while (k < end && buffers.Zero[k])
                    {
                        k++;
                    }

                    if (Byte(k) - Byte(z) >= MinZeroObject || (z == pos && k == end))
                    {
                        runStart = z;
                        runEnd = k;
                        break;
                    }
                }

                if (runStart < 0)
                {
                    WriteObject(index, part++, rangeOffset + Byte(pos), data[Byte(pos)..Byte(end)], allZero: false, buffers);
                    break;
                }

                if (runStart > pos)
                {
                    WriteObject(index, part++, rangeOffset + Byte(pos), data[Byte(pos)..Byte(runStart)], allZero: false, buffers);
                }

                WriteObject(index, part++, rangeOffset + Byte(runStart), data[Byte(runStart)..Byte(runEnd)], allZero: true, buffers);
                pos = runEnd;
            }

            return part;
        }

        private void WriteObject(int index, int part, long offset, ReadOnlySpan<byte> data, bool allZero, Buffers buffers)
        {
            CompressionAlgorithm used;
            ReadOnlySpan<byte> stored;
            string md5;
            if (allZero)
            {
                // All-zero runs of a length are compressed and digested once per backup.
                var zeros = _zeroObjects.GetOrAdd(data.Length, len =>
                {
                    var raw = new byte[len];
                    var output = new byte[len];
                    var (alg, n) = Encoder.Encode(raw, output);
                    return new EncodedZeros(alg == CompressionAlgorithm.None ? null : output[..n], alg, Convert.ToHexString(MD5.HashData(raw)).ToLowerInvariant());
                });
                used = zeros.Compression;
                stored = zeros.Encoded ?? data;
                md5 = zeros.Md5;
            }
            else
            {
                md5 = Convert.ToHexString(MD5.HashData(data)).ToLowerInvariant();
                var (alg, n) = Encoder.Encode(data, buffers.Encoded);
                used = alg;
                stored = alg == CompressionAlgorithm.None ? data : buffers.Encoded.AsSpan(0, n);
            }

            var temp = Path.Combine(_container, $".tmp-{index:D7}-{part:D5}");
            using (var file = AtomicFile.CreateNew(temp, 0))
            {
                file.Write(stored);
                if (LinuxNative.IsLinux)
                {
                    LinuxNative.StartWriteback(file.SafeFileHandle);
                }
                else
                {
                    file.Flush(flushToDisk: true);
                }
            }

            Interlocked.Add(ref _storedBytes, stored.Length);
            _pending.Add(new PendingObject(temp, offset, data.Length, used, md5));
        }
    }
}
