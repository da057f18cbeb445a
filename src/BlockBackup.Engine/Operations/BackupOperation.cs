using System.Collections.Concurrent;
using System.Diagnostics;
using System.Security.Cryptography;
using BlockBackup.Engine.Compression;
using BlockBackup.Engine.Consistency;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Format;
using BlockBackup.Engine.Hashing;
using BlockBackup.Engine.Native;
using BlockBackup.Engine.ObjectStores;
using BlockBackup.Engine.Repository;
using BlockBackup.Engine.Volumes;

namespace BlockBackup.Engine.Operations;

/// <summary>
/// Full and incremental backups of a file or block device into a repository, in Cinder's format.
/// Object ranges are processed in parallel; each buffer is read once and hashed once (SHA-256 per
/// block, MD5 per object in the same pass over memory), holes are never read and all-zero blocks
/// are never hashed or compressed. Written once over the repository's object store (a directory,
/// S3 or Swift): nothing is visible until the metadata, stored last, exists.
/// </summary>
public static class BackupOperation
{
    public static BackupResult Run(IChunkedRepository repository, BackupRequest request, IProgress<OperationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        Validate(request);
        var clock = Stopwatch.StartNew();
        var resolved = VolumeIdentity.ResolvePath(request.SourcePath);
        using var volume = VolumeSource.Open(resolved);
        var volumeId = request.VolumeId ?? VolumeIdentity.ForPath(resolved);

        using var volumeLock = repository.AcquireLock(volumeId, "backup", cancellationToken, progress);
        // Clones of this image that killed backups left beside it (from any repository: a clone
        // no process holds is a leftover wherever its backup was going). Before the leftovers,
        // whose records would remove the same clones without saying so.
        if (!volume.IsBlockDevice)
        {
            ConsistentView.RemoveAbandonedClones(resolved, request.Log);
        }

        var leftovers = RemoveLeftovers(repository, volumeLock, request.Log, progress, cancellationToken);
        var parent = ChooseParent(repository, request, volumeId, volume.Size, leftovers);

        // Recorded as in flight, with the clone it may make, before that clone exists: a kill at
        // any later step leaves a record that cleanup follows to the clone.
        var clonePath = ConsistentView.PlanClone(resolved, volume.IsBlockDevice, request.UseSnapshot);
        var backup = repository.BeginBackup(volumeLock, volumeId, Guid.NewGuid(), DateTime.UtcNow, clonePath);
        BackupJob? job = null;
        ConsistentView? view = null;
        VolumeSource? snapshot = null;
        var committed = false;
        try
        {
            progress?.Report(new OperationProgress(OperationPhase.Preparing, 0, volume.Size, $"Taking a point-in-time view of {resolved}"));
            view = ConsistentView.Acquire(resolved, volume.IsBlockDevice, request.Force, request.UseSnapshot, clonePath);
            snapshot = view.ReadHandle is { } clone ? VolumeSource.Borrow(view.ReadPath, clone)
                : view.ReadPath == resolved ? null
                : VolumeSource.Open(view.ReadPath);
            job = new BackupJob(repository, request, snapshot ?? volume, parent, backup, volume.Size, progress, cancellationToken);
            var written = job.Run();

            // The copy has served: it goes before the commit, so nothing outlives the record naming it.
            snapshot?.Dispose();
            view.Dispose();
            var info = Commit(repository, request, job, written, new CommitInfo(backup, parent,
                ConsistencyNames.ToRecordName(view.Method), resolved, null, volume.Size), progress, cancellationToken);
            committed = true;
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
        catch when (!committed)
        {
            // Once committed, the backup exists: a later failure (a progress handler, a stopped
            // pipeline) must not take it away. AbandonBackup also keeps any backup whose metadata
            // is in place, should the failure come from within the commit itself.
            repository.AbandonBackup(backup);
            throw;
        }
        finally
        {
            snapshot?.Dispose();
            view?.Dispose();
            job?.Hashes.Dispose();
        }
    }

    /// <summary>What the commit step records beyond the job's own results.</summary>
    internal sealed record CommitInfo(NewBackup Backup, BackupInfo? Parent, string Consistency, string Source, string? SourceSnapshot, long VolumeSize);

    /// <summary>
    /// Makes a backup exist: every data object durable, then the hash list, then the metadata
    /// (create-only: the commit point), then whatever the repository caches. Before the metadata
    /// exists nothing lists the backup as available.
    /// </summary>
    internal static BackupInfo Commit(IChunkedRepository repository, BackupRequest request, BackupJob job, ObjectList written, CommitInfo c, IProgress<OperationProgress>? progress, CancellationToken cancellationToken)
    {
        progress?.Report(new OperationProgress(OperationPhase.Committing, c.VolumeSize, c.VolumeSize, "Writing hash list and metadata"));
        var b = c.Backup;
        var store = repository.Store;
        // One flush makes every data object durable before anything refers to them (their
        // writeback was started as each was written, so little is left to wait for).
        store.FlushAsync(cancellationToken).GetAwaiter().GetResult();
        // A volume lock on object storage is a lease: it may have lapsed (and the objects gone
        // with a cleanup) while this backup ran; then nothing more is stored.
        repository.CheckBeforeCommit(b, written, job.StoredBytes, cancellationToken);
        var createdAt = CinderTime.Format(b.StartedUtc);
        string? sha256FileChecksum = null;
        store.PutWrittenAsync(repository.ObjectKey(b.Container, ObjectNaming.Sha256FileName(b.Prefix)), s =>
            sha256FileChecksum = Sha256File.Write(s, new Sha256FileHeader(b.BackupId, b.VolumeId, request.Name, request.Description, createdAt, request.HashBlockSize), job.Hashes, cancellationToken),
            PutOptions.Default, cancellationToken).GetAwaiter().GetResult();
        var metadata = new BackupMetadata
        {
            BackupId = b.BackupId,
            VolumeId = b.VolumeId,
            Name = request.Name,
            Description = request.Description,
            CreatedAt = createdAt,
            ParentId = c.Parent?.Id,
            Objects = written,
            Extra = new BlockBackupExtra
            {
                VolumeSize = c.VolumeSize,
                Source = c.Source,
                SourceSnapshot = c.SourceSnapshot,
                Consistency = c.Consistency,
                Compression = CompressionNames.ToMetadataName(job.Encoder.Algorithm),
                CompressionLevel = job.Encoder.Level,
                ObjectSize = request.ObjectSize,
                HashBlockSize = request.HashBlockSize,
                StartedUtc = b.StartedUtc,
                CompletedUtc = DateTime.UtcNow,
                StoredBytes = job.StoredBytes,
                ObjectsSha256 = MetadataSerializer.ObjectsChecksum(written),
                Sha256FileSha256 = sha256FileChecksum!, // set by the write above
                Tool = "BlockBackup " + typeof(BackupOperation).Assembly.GetName().Version?.ToString(3),
                Policy = request.Policy,
            },
        };
        // Streamed, not built in memory: half a million objects make ~100 MB of JSON.
        cancellationToken.ThrowIfCancellationRequested();
        store.PutWrittenAsync(repository.ObjectKey(b.Container, ObjectNaming.MetadataName(b.Prefix)), s => MetadataSerializer.Write(s, metadata),
            new PutOptions(CreateOnly: true), cancellationToken).GetAwaiter().GetResult();

        // From here on the backup exists; whatever the repository does now is only a cache.
        return repository.CompleteBackup(b, metadata);
    }

    /// <summary>
    /// Removes what earlier, interrupted backups of the locked volume left in the repository (see
    /// <see cref="IChunkedRepository.RemoveLeftoversOf"/>), saying so through <paramref name="log"/>.
    /// Best effort: a leftover that cannot be removed is reported and kept, the backup goes on.
    /// </summary>
    internal static IReadOnlyList<BackupInfo> RemoveLeftovers(IChunkedRepository repository, IVolumeLock volumeLock, Action<string>? log, IProgress<OperationProgress>? progress, CancellationToken cancellationToken)
    {
        progress?.Report(new OperationProgress(OperationPhase.Preparing, 0, 0, $"Looking for leftovers of interrupted backups of volume {volumeLock.VolumeId}"));
        var removed = repository.RemoveLeftoversOf(volumeLock,
            (leftover, ex) => log?.Invoke($"Could not remove the leftover of interrupted backup {leftover.Id} in '{leftover.Container}': {ex.Message}"),
            cancellationToken);
        foreach (var leftover in removed)
        {
            log?.Invoke($"Removed the leftover of interrupted backup {leftover.Id} of volume {leftover.VolumeId} (container '{leftover.Container}', last written {leftover.CreatedUtc:u}).");
        }

        return removed;
    }

    internal static void Validate(BackupRequest r)
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

    /// <summary>
    /// Cinder's rules: the named parent, else the newest available backup of the volume; same hash
    /// block size; the volume must not have grown. Never one of <paramref name="removedLeftovers"/>:
    /// such a backup can list as available only because a process whose lease lapsed stored its
    /// metadata after its objects were removed (it retracts it, see CommitFence).
    /// </summary>
    internal static BackupInfo? ChooseParent(IChunkedRepository repository, BackupRequest request, Guid volumeId, long volumeSize, IReadOnlyList<BackupInfo>? removedLeftovers = null)
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
                $"No available backup of volume {volumeId} exists in '{repository.Location}' to base an incremental backup on. Make a full backup first (without -Incremental).", volumeId);
        }

        if (removedLeftovers?.Any(l => l.Id == parent.Id) == true)
        {
            throw new BackupException(BackupErrorKind.ResourceBusy, "VolumeLockLost",
                $"Backup {parent.Id} of volume {volumeId} in '{repository.Location}' was removed by this backup as the leftover of an interrupted one, and then its writer, whose lease on the volume had lapsed, stored its metadata: it is incomplete and is not used as the parent. Run the backup again.", parent.Id);
        }

        if (volumeSize > parent.VolumeSize)
        {
            throw new BackupException(BackupErrorKind.InvalidOperation, "VolumeGrew",
                $"The volume grew from {ByteSize.Human(parent.VolumeSize)} to {ByteSize.Human(volumeSize)} ({parent.VolumeSize} to {volumeSize} bytes) since backup {parent.Id}; an incremental cannot describe that (as in Cinder). Make a full backup (without -Incremental).", parent.Id);
        }

        return parent;
    }

    /// <summary>The data phase of one backup.</summary>
    internal sealed class BackupJob
    {
        private readonly IChunkedRepository _repository;
        private readonly ObjectStores.IObjectStore _store;
        private readonly BackupRequest _request;
        private readonly VolumeSource? _source;
        private readonly BackupInfo? _parent;
        private readonly NewBackup _backup;
        private readonly ObjectNumbering _numbering;
        private readonly long _size;
        private readonly IProgress<OperationProgress>? _progress;
        private readonly CancellationToken _cancel;
        private readonly ConcurrentBag<Buffers> _pool = new();
        private readonly ConcurrentDictionary<int, EncodedZeros> _zeroObjects = new();
        // Compact (48 bytes an object, sorted in place): no descriptor object per object, nor a
        // sorted copy of half a million references at the end of a 4 TiB backup.
        private readonly ObjectList _written;
        private BlockHashList? _parentHashes;
        private long _bytesRead;
        private long _storedBytes;

        public BackupJob(IChunkedRepository repository, BackupRequest request, VolumeSource? source, BackupInfo? parent, NewBackup backup, long size, IProgress<OperationProgress>? progress, CancellationToken cancel)
        {
            _repository = repository;
            _store = repository.Store;
            _request = request;
            _source = source;
            _parent = parent;
            _backup = backup;
            _numbering = new ObjectNumbering(cancel);
            _size = size;
            _written = new ObjectList();
            _progress = progress;
            _cancel = cancel;
            Encoder = new ObjectEncoder(request.Compression, request.CompressionLevel);
            Hashes = BlockHashList.Create(BlockCount(size, request.HashBlockSize), WorkDirectory.Path);
        }

        public ObjectEncoder Encoder { get; }
        public BlockHashList Hashes { get; }
        public long BytesRead => _bytesRead;
        public long StoredBytes => _storedBytes;

        /// <summary>One object a range will be stored as: bytes [Start, End) of its buffer.</summary>
        private readonly record struct PlannedObject(int Start, int End, bool AllZero);

        private sealed record EncodedZeros(byte[]? Encoded, CompressionAlgorithm Compression, string Md5);

        private sealed class Buffers(int objectSize, int blocks)
        {
            // Uninitialized: pages the encoder never reaches (the tail past a compressed object's
            // length) are never touched, so they cost no memory.
            public readonly byte[] Data = GC.AllocateUninitializedArray<byte>(objectSize);
            public readonly byte[] Encoded = GC.AllocateUninitializedArray<byte>(objectSize);
            public readonly byte[] Hashes = new byte[blocks * BlockHashList.HashSize];
            public readonly byte[] ParentHashes = new byte[blocks * BlockHashList.HashSize];
            public readonly bool[] Zero = new bool[blocks];
            /// <summary>Blocks a differential source says did not change: their hash is the parent's, unread.</summary>
            public readonly bool[] Unchanged = new bool[blocks];
            public readonly List<(int Start, int End)> DataRanges = new();
            public readonly List<PlannedObject> Objects = new();
        }

        /// <summary>Shared all-zero source for hole-only objects stored raw (compression "none").</summary>
        private static readonly byte[] ZeroSource = new byte[BackupRequest.DefaultObjectSize];

        private static long BlockCount(long size, int block) => (size + block - 1) / block;

        /// <summary>Zero runs at least this long are stored as separate zero objects.</summary>
        private const int MinZeroObject = 256 * 1024;

        /// <summary>Backs up by reading the volume, range by range, on all cores.</summary>
        public ObjectList Run() => Execute(throttle =>
        {
            var ranges = (int)((_size + _request.ObjectSize - 1) / _request.ObjectSize);
            var options = new ParallelOptions { MaxDegreeOfParallelism = Workers, CancellationToken = _cancel };
            var indices = System.Collections.Concurrent.Partitioner.Create(Enumerable.Range(0, ranges), EnumerablePartitionerOptions.NoBuffering);
            Parallel.ForEach(indices, options, index =>
            {
                _cancel.ThrowIfCancellationRequested();
                try
                {
                    throttle.Add(ProcessRange(index));
                }
                catch
                {
                    _numbering.Fail(); // ranges after this one wait for its numbers: let them stop
                    throw;
                }
            });
        });

        /// <summary>
        /// Backs up from an <c>rbd export-diff --whole-object</c> stream (records in offset order):
        /// this thread fills ranges from the stream while workers hash and store them. In a
        /// differential stream, blocks no record touches are unchanged (their hashes come from the
        /// parent, unread); in a complete one they are holes (zeros).
        /// </summary>
        public ObjectList RunFromDiff(Rbd.IRbdDiffSource reader, bool differential) => Execute(throttle =>
        {
            var ranges = (int)((_size + _request.ObjectSize - 1) / _request.ObjectSize);
            var blockSize = _request.HashBlockSize;
            using var queue = new BlockingCollection<(int Index, Buffers Buffers)>(boundedCapacity: Workers);
            var workers = Enumerable.Range(0, Workers).Select(_ => Task.Run(() =>
            {
                foreach (var (index, buffers) in queue.GetConsumingEnumerable(_cancel))
                {
                    try
                    {
                        throttle.Add(ProcessFilled(index, buffers));
                    }
                    catch
                    {
                        _numbering.Fail();
                        throw;
                    }
                    finally
                    {
                        _pool.Add(buffers);
                    }
                }
            }, _cancel)).ToArray();

            var current = -1;
            Buffers? filling = null;
            var touched = false;
            void Advance(int until)
            {
                // Hands every range before `until` to the workers (untouched ones too: a full
                // stream's holes still need zero objects, a differential one's hashes the parent's).
                while (current < until)
                {
                    if (filling is not null)
                    {
                        queue.Add((current, filling), _cancel);
                    }

                    current++;
                    if (current >= ranges)
                    {
                        filling = null;
                        return;
                    }

                    filling = RentBuffers();
                    filling.DataRanges.Clear();
                    Array.Fill(filling.Unchanged, differential && _parentHashes is not null);
                    touched = false;
                }
            }

            try
            {
                Advance(0);
                while (reader.Next() is { } record)
                {
                    _cancel.ThrowIfCancellationRequested();
                    if (record.Offset % blockSize != 0 || (record.End % blockSize != 0 && record.End != _size))
                    {
                        throw new BackupException(BackupErrorKind.InvalidData, "RbdDiffNotBlockAligned",
                            $"The RBD diff record [{record.Offset}, {record.End}) is not aligned to the {blockSize}-byte hash blocks; the image's object size is smaller than a hash block.", record.Offset);
                    }

                    for (var pos = record.Offset; pos < record.End;)
                    {
                        var index = (int)(pos / _request.ObjectSize);
                        Advance(index);
                        var (rangeOffset, rangeLength) = RangeOf(index);
                        var end = Math.Min(record.End, rangeOffset + rangeLength);
                        var from = (int)(pos - rangeOffset);
                        var to = (int)(end - rangeOffset);
                        if (!touched)
                        {
                            // Zeros wherever the stream puts nothing; cleared once, when first touched.
                            filling!.Data.AsSpan(0, rangeLength).Clear();
                            touched = true;
                        }

                        if (record.Kind == Rbd.RbdDiffRecordKind.Data)
                        {
                            reader.ReadData(filling!.Data.AsSpan(from, to - from));
                            Interlocked.Add(ref _bytesRead, to - from);
                        }

                        // Data and zero records alike change these blocks: hash them, do not trust the parent.
                        filling!.Unchanged.AsSpan(from / blockSize, (to - from + blockSize - 1) / blockSize).Clear();
                        if (filling.DataRanges.Count > 0 && filling.DataRanges[^1].End == from)
                        {
                            filling.DataRanges[^1] = (filling.DataRanges[^1].Start, to);
                        }
                        else
                        {
                            filling.DataRanges.Add((from, to));
                        }

                        pos = end;
                    }
                }

                Advance(ranges);
            }
            catch
            {
                _numbering.Fail();
                throw;
            }
            finally
            {
                queue.CompleteAdding();
                try
                {
                    Task.WaitAll(workers);
                }
                catch (AggregateException) when (_cancel.IsCancellationRequested)
                {
                }
            }
        });

        private int Workers => _request.Workers ?? Environment.ProcessorCount;

        /// <summary>Loads the parent's hash list, runs the data phase, then renames the objects.</summary>
        private ObjectList Execute(Action<ProgressThrottle> dataPhase)
        {
            try
            {
                if (_parent is not null)
                {
                    _progress?.Report(new OperationProgress(OperationPhase.Preparing, 0, _size, $"Reading the hash list of parent backup {_parent.Id}"));
                    var (header, hashes) = ChunkedReads.ReadHashList(_repository, _parent, _repository.ReadMetadata(_parent), _cancel);
                    _parentHashes = hashes;
                    if (header.ChunkSize != _request.HashBlockSize)
                    {
                        throw new BackupException(BackupErrorKind.InvalidOperation, "HashBlockSizeChanged",
                            $"The hash block size changed since backup {_parent.Id} ({header.ChunkSize} → {_request.HashBlockSize}); do a full backup.", _parent.Id);
                    }
                }

                var throttle = new ProgressThrottle(_progress, OperationPhase.Reading, _size, $"Backing up {_request.SourcePath}");
                dataPhase(throttle);
                throttle.Complete();
                // Each object was put at its number (volume order): the list is in offset order.
                if (!_written.IsComplete)
                {
                    throw new InvalidOperationException($"Backup {_backup.BackupId}: {_written.Count} objects were numbered but not all were recorded.");
                }

                return _written;
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

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)] // hot loop: skip tier-0 code
        private long ProcessRange(int index)
        {
            var buffers = RentBuffers();
            try
            {
                var (offset, length) = RangeOf(index);
                Interlocked.Add(ref _bytesRead, _source!.ReadSparse(buffers.Data.AsSpan(0, length), offset, buffers.DataRanges));
                Array.Clear(buffers.Unchanged);
                return ProcessFilled(index, buffers);
            }
            finally
            {
                _pool.Add(buffers);
            }
        }

        private Buffers RentBuffers() =>
            _pool.TryTake(out var b) ? b : new Buffers((int)_request.ObjectSize, (int)(_request.ObjectSize / _request.HashBlockSize));

        private (long Offset, int Length) RangeOf(int index)
        {
            var offset = index * _request.ObjectSize;
            return (offset, (int)Math.Min(_request.ObjectSize, _size - offset));
        }

        /// <summary>
        /// Hashes and stores one range whose buffer holds the volume's bytes (DataRanges: where data
        /// was put; elsewhere zeros, never looked at) and whose Unchanged mask names blocks a
        /// differential source vouches for.
        /// </summary>
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)] // hot loop: skip tier-0 code
        private long ProcessFilled(int index, Buffers buffers)
        {
            var blockSize = _request.HashBlockSize;
            var (offset, length) = RangeOf(index);
            {
                var data = buffers.Data.AsSpan(0, length);
                var holesOnly = buffers.DataRanges.Count == 0;
                var blocks = (int)BlockCount(length, blockSize);
                var hashes = buffers.Hashes.AsSpan(0, blocks * BlockHashList.HashSize);
                var firstBlock = offset / blockSize;
                var parentBlocks = 0;
                var parentHashes = Span<byte>.Empty;
                if (_parentHashes is not null)
                {
                    parentBlocks = (int)Math.Clamp(_parentHashes.Count - firstBlock, 0, blocks);
                    parentHashes = buffers.ParentHashes.AsSpan(0, parentBlocks * 32);
                    _parentHashes.Get(firstBlock, parentHashes);
                }

                var range = 0;
                for (var k = 0; k < blocks; k++)
                {
                    if (buffers.Unchanged[k] && k < parentBlocks)
                    {
                        parentHashes.Slice(k * 32, 32).CopyTo(hashes.Slice(k * 32, 32));
                        buffers.Zero[k] = false;
                        continue;
                    }

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

                Hashes.Set(firstBlock, hashes);

                var dataArray = buffers.Data;
                if (holesOnly)
                {
                    // The buffer was not filled; never hand its stale bytes to the writer.
                    dataArray = length <= ZeroSource.Length ? ZeroSource : new byte[length];
                    data = dataArray.AsSpan(0, length);
                }

                // Full backup: every block goes into an object. Incremental: only runs of blocks
                // whose hash differs from the parent's at the same index (Cinder's rule).

                buffers.Objects.Clear();
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

                    PlanExtent(length, start, k2, buffers);
                }

                // Numbers follow volume order across ranges (Cinder's %05d sequence); the wait is
                // for the ranges before this one to be planned, not stored.
                var number = _numbering.Reserve(index, buffers.Objects.Count);
                foreach (var planned in buffers.Objects)
                {
                    WriteObject(number++, offset + planned.Start, dataArray, planned, buffers);
                }

                return length;
            }
        }

        /// <summary>True when block k's hash equals the parent's (never for a full backup: no parent hashes).</summary>
        private static bool SameAsParent(ReadOnlySpan<byte> hashes, ReadOnlySpan<byte> parentHashes, int k) =>
            (k + 1) * 32 <= parentHashes.Length && hashes.Slice(k * 32, 32).SequenceEqual(parentHashes.Slice(k * 32, 32));

        /// <summary>
        /// Plans blocks [first, end) of a range as objects. Long runs of zero blocks become
        /// objects of their own, whose encoding and MD5 are computed once per length: MD5 has no
        /// shortcut for zeros, so hashing them inside data objects would cost as much as data.
        /// Objects stay block-aligned and never cross the range (Cinder's incremental rule).
        /// </summary>
        private void PlanExtent(int length, int first, int end, Buffers buffers)
        {
            var blockSize = _request.HashBlockSize;
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
                    buffers.Objects.Add(new PlannedObject(Byte(pos), Byte(end), AllZero: false));
                    break;
                }

                if (runStart > pos)
                {
                    buffers.Objects.Add(new PlannedObject(Byte(pos), Byte(runStart), AllZero: false));
                }

                buffers.Objects.Add(new PlannedObject(Byte(runStart), Byte(runEnd), AllZero: true));
                pos = runEnd;
            }
        }

        private void WriteObject(int number, long offset, byte[] source, PlannedObject planned, Buffers buffers)
        {
            var data = source.AsSpan(planned.Start, planned.End - planned.Start);
            CompressionAlgorithm used;
            byte[] stored;
            int storedStart, storedLength;
            string md5;
            if (planned.AllZero)
            {
                // All-zero runs of a length are compressed and digested once per backup.
                var zeros = _zeroObjects.GetOrAdd(data.Length, len =>
                {
                    var raw = new byte[len];
                    var output = new byte[len];
                    var (alg, n) = Encoder.Encode(raw, output, _cancel);
                    return new EncodedZeros(alg == CompressionAlgorithm.None ? null : output[..n], alg, ZeroBlock.ObjectMd5(len));
                });
                used = zeros.Compression;
                (stored, storedStart, storedLength) = zeros.Encoded is { } encoded ? (encoded, 0, encoded.Length) : (source, planned.Start, data.Length);
                md5 = zeros.Md5;
            }
            else
            {
                md5 = Convert.ToHexString(MD5.HashData(data)).ToLowerInvariant();
                var (alg, n) = Encoder.Encode(data, buffers.Encoded, _cancel);
                used = alg;
                (stored, storedStart, storedLength) = alg == CompressionAlgorithm.None ? (source, planned.Start, data.Length) : (buffers.Encoded, 0, n);
            }

            // The metadata's md5 is of the uncompressed bytes; it is the store's check on the
            // wire only when nothing was compressed (else the store digests what it sends).
            var name = ObjectNaming.ObjectName(_backup.Prefix, number);
            using var content = new MemoryStream(stored, storedStart, storedLength, writable: false, publiclyVisible: true); // stores digest and send it in place
            var options = new ObjectStores.PutOptions(ContentMd5: used == CompressionAlgorithm.None ? Convert.FromHexString(md5) : null, DeferDurability: true);
            _store.PutAsync(_repository.ObjectKey(_backup.Container, name), content, storedLength, options, _cancel).GetAwaiter().GetResult();
            Interlocked.Add(ref _storedBytes, storedLength);
            var written = new ObjectDescriptor(name, offset, data.Length, used, md5);
            lock (_written)
            {
                _written.Put(number - 1, written); // numbers run from 1 in volume order; workers finish out of order
            }
        }
    }
}
