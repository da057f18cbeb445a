using System.Collections.Concurrent;
using System.Diagnostics;
using System.Security.Cryptography;
using BlockBackup.Engine.Compression;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Format;
using BlockBackup.Engine.Hashing;
using BlockBackup.Engine.Repository;

namespace BlockBackup.Engine.Operations;

/// <summary>
/// Restores a backup (through its chain) to a file or block device: each block is written once,
/// from the newest backup holding it, and checked against the requested backup's SHA-256 list.
/// Objects are decompressed streaming and in parallel; memory does not grow with object or volume size.
/// </summary>
public static class RestoreOperation
{
    private const int PieceTarget = 1 << 20;

    /// <summary>How a file-repository restore will proceed (Cinder's chunked driver has full and chain restores).</summary>
    public static RestoreDecision Decide(BackupChain chain) => chain.Length == 1
        ? new RestoreDecision(RestorePath.Full, "FullBackup", "The backup is a full backup; its objects alone restore the volume.")
        : new RestoreDecision(RestorePath.Chain, "IncrementalChain",
            $"The backup is incremental; {chain.Length} backups (1 full + {chain.Length - 1} incremental) are combined, each block written once from the newest backup that holds it.");

    /// <summary>
    /// What a restore would do, without writing anything: the chain, the path and the rule that
    /// decided it, and the state of the target (for -WhatIf and the overwrite check).
    /// </summary>
    public static RestorePreview Preview(IChunkedRepository repository, Guid backupId, string targetPath)
    {
        var chain = repository.GetChain(backupId);
        var full = Path.GetFullPath(targetPath);
        var (exists, holdsData, isDevice, size) = RestoreTarget.Inspect(full);
        return new RestorePreview(chain, Decide(chain), full, exists, holdsData, isDevice, size);
    }

    public static RestoreResult Run(IChunkedRepository repository, RestoreRequest request, IProgress<OperationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var clock = Stopwatch.StartNew();
        var chain = repository.GetChain(request.BackupId);
        // Refuse an occupied target before reading a (possibly huge) hash list.
        var targetPath = Path.GetFullPath(request.TargetPath);
        var targetState = RestoreTarget.Inspect(targetPath);
        RestoreTarget.RefuseToOverwrite(targetPath, targetState, request.Overwrite);
        // Removal refuses these backups while we read them (a killed restore's claim expires).
        using var reading = repository.BeginRead(chain.Target.VolumeId, chain.Backups.Select(b => b.Id).ToList(), "restore", cancellationToken);
        var layers = chain.Backups.Select(repository.ReadMetadata).ToList();
        var requested = layers[^1];
        progress?.Report(new OperationProgress(OperationPhase.Preparing, 0, chain.VolumeSize, $"Reading the hash list of backup {chain.BackupId}"));
        var (header, expected) = ChunkedReads.ReadHashList(repository, chain.Target, requested, cancellationToken);
        using var hashes = expected;
        var blockSize = header.ChunkSize;
        var size = requested.Extra?.VolumeSize ?? DeriveVolumeSize(hashes.Count, blockSize, layers[0]);
        var blocks = (size + blockSize - 1) / blockSize;
        if (hashes.Count != blocks)
        {
            throw new BackupException(BackupErrorKind.InvalidData, "HashListSizeMismatch",
                $"Backup {chain.BackupId}: its hash list has {hashes.Count} entries but a volume of {size} bytes has {blocks} blocks of {blockSize}; the backup is damaged.", chain.BackupId);
        }

        var plan = RestorePlan.Create(chain, layers, blockSize, size);
        var zeros = Check(repository, plan, hashes, blockSize, chain.BackupId, cancellationToken);
        cancellationToken.ThrowIfCancellationRequested();

        using var target = RestoreTarget.Open(targetPath, size, request.Overwrite, targetState);
        try
        {
            return Write(repository.Store, t => repository.ObjectKey(t.Container, t.Object.Name), chain, plan, zeros, hashes, target, size, blockSize, request, progress, clock, cancellationToken);
        }
        catch (BackupException ex) when (target.WritesInPlace)
        {
            throw new BackupException(ex.Kind, ex.ErrorId, ex.Message + PartialTarget(target), ex.Target, ex);
        }
        catch (BackupException ex) when (ex.ErrorId != "TargetAppeared")
        {
            // A new target is written under a hidden name and put in place only when complete.
            throw new BackupException(ex.Kind, ex.ErrorId, $"{ex.Message} Nothing was put in place at '{target.Path}'.", ex.Target, ex);
        }
        catch (OperationCanceledException ex) when (target.WritesInPlace)
        {
            throw new OperationStoppedException($"The restore of backup {chain.BackupId} was stopped.{PartialTarget(target)}", ex, cancellationToken);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Named by the target the user gave: .NET's message names only the hidden temporary a
            // new target is written under.
            var what = $"Writing the restore target '{target.Path}'";
            var fault = StorageFault.Classify(ex, what)
                ?? new BackupException(BackupErrorKind.WriteError, "RestoreWriteFailed", $"{what} failed: {ex.Message}.", target.Path, ex);
            throw new BackupException(fault.Kind, fault.ErrorId, fault.Message + (target.WritesInPlace ? PartialTarget(target) : " Nothing was put in place."), target.Path, ex);
        }
    }

    /// <summary>
    /// Walks the plan once before a byte is written: every stretch that restores to zeros (no
    /// object, or an object whose MD5 is that of zeros) must be zeros in the hash list, and every
    /// object to read must exist, by one stat per object on a file system, by one listing per
    /// backup on a remote store (not one request per object). Returns the zero stretches, merged.
    /// </summary>
    private static List<ByteRange> Check(IChunkedRepository repository, RestorePlan plan, BlockHashList hashes, int blockSize, Guid backupId, CancellationToken cancellationToken)
    {
        var zeros = new List<ByteRange>();
        var zeroHashes = new ZeroHashCheck(hashes, blockSize, plan.VolumeSize);
        var listings = new Dictionary<Guid, ChunkedReads.ObjectSet>();
        var lastChecked = new Dictionary<Guid, ObjectDescriptor>();
        foreach (var s in plan.Segments())
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (RestorePlan.IsZeros(s))
            {
                if (zeroHashes.FirstDataBlock(s.Range) is { } offset)
                {
                    throw s.Object is null
                        ? new BackupException(BackupErrorKind.InvalidData, "UncoveredDataBlock",
                            $"Backup {backupId}: the block at volume offset {offset} holds data according to the hash list, but no object in the chain covers it; an object is missing from the metadata. Nothing was written.", offset)
                        : new BackupException(BackupErrorKind.InvalidData, "BlockHashMismatch",
                            $"Backup {plan.BackupOf(s).Id}: object '{s.Object.Name}' holds zeros (its MD5 says so), but the hash list of backup {backupId} says the block at volume offset {offset} holds data; the backup is damaged. Nothing was written.", s.Object.Name);
                }

                if (zeros.Count > 0 && zeros[^1].End == s.Start)
                {
                    zeros[^1] = new ByteRange(zeros[^1].Start, s.End);
                }
                else
                {
                    zeros.Add(s.Range);
                }

                continue;
            }

            // A backup's stretches come in its objects' order: each object is checked once.
            var backup = plan.BackupOf(s);
            if (lastChecked.TryGetValue(backup.Id, out var last) && last.Offset == s.Object!.Offset)
            {
                continue;
            }

            lastChecked[backup.Id] = s.Object!;
            bool exists;
            if (repository.Store.Properties.CheapStat)
            {
                exists = repository.Store.StatAsync(repository.ObjectKey(backup.Container, s.Object!.Name), cancellationToken).GetAwaiter().GetResult() is not null;
            }
            else
            {
                if (!listings.TryGetValue(backup.Id, out var present))
                {
                    listings[backup.Id] = present = ChunkedReads.ListObjects(repository, backup, cancellationToken);
                }

                exists = present.Contains(s.Object!);
            }

            if (!exists)
            {
                var key = repository.ObjectKey(backup.Container, s.Object!.Name);
                throw new BackupException(BackupErrorKind.InvalidData, "ObjectMissing",
                    $"Backup {backup.Id}: object '{s.Object.Name}' (volume offset {s.Object.Offset}) is missing: there is no '{repository.DisplayName(key)}'. Nothing was written.", s.Object.Name);
            }
        }

        return zeros;
    }

    private static string PartialTarget(RestoreTarget target) =>
        $" The target '{target.Path}' was written in place and is now PARTIAL (neither its old content nor the backup); run the same restore again with -Force to restore it completely.";

    private static RestoreResult Write(ObjectStores.IObjectStore store, Func<RestoreTask, string> keyOf, BackupChain chain, RestorePlan plan, List<ByteRange> zeros, BlockHashList hashes, RestoreTarget target, long size, int blockSize,
        RestoreRequest request, IProgress<OperationProgress>? progress, Stopwatch clock, CancellationToken cancellationToken)
    {
        var throttle = new ProgressThrottle(progress, OperationPhase.Restoring, size, $"Restoring {chain.BackupId} to {target.Path}");
        long written = 0, zeroBytes = 0, verified = 0;
        var zeroBuffer = new byte[PieceTarget];
        foreach (var gap in zeros)
        {
            target.Zero(gap.Start, gap.Length, zeroBuffer);
            zeroBytes += gap.Length;
            verified += (gap.End + blockSize - 1) / blockSize - gap.Start / blockSize;
            throttle.Add(gap.Length);
        }

        var pieceSize = Math.Max(blockSize, PieceTarget / blockSize * blockSize);
        try
        {
            // Remote stores answer each GET after a round trip: more requests in flight than cores keep both busy.
            var workers = request.Workers ?? Math.Clamp(store.Properties.Connections, Environment.ProcessorCount, 2 * Environment.ProcessorCount);
            var options = new ParallelOptions { MaxDegreeOfParallelism = workers, CancellationToken = cancellationToken };
            var ordered = Partitioner.Create(plan.Tasks(), EnumerablePartitionerOptions.NoBuffering);
            Parallel.ForEach(ordered, options, () => new Worker(pieceSize, blockSize), (task, _, worker) =>
            {
                worker.Restore(store, keyOf, task, target, hashes, size, throttle, cancellationToken);
                return worker;
            }, worker =>
            {
                Interlocked.Add(ref written, worker.Written);
                Interlocked.Add(ref zeroBytes, worker.ZeroBytes);
                Interlocked.Add(ref verified, worker.Verified);
            });
        }
        catch (AggregateException ex)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(ex.InnerExceptions[0]).Throw();
        }

        target.Commit();
        throttle.Complete();
        return new RestoreResult
        {
            Backup = chain.Target,
            TargetPath = target.Path,
            Decision = Decide(chain),
            ChainLength = chain.Length,
            VolumeSize = size,
            BytesWritten = written,
            ZeroBytes = zeroBytes,
            BlocksVerified = verified,
            TargetWasNew = target.IsNew,
            Duration = clock.Elapsed,
        };
    }

    /// <summary>
    /// Cinder records no volume size. Its hash list has one entry per block; the last block may be
    /// short, which only the full backup's last object end tells (Cinder volumes are whole GiB).
    /// </summary>
    internal static long DeriveVolumeSize(long blocks, int blockSize, BackupMetadata full)
    {
        var upper = blocks * blockSize;
        var end = full.Objects.Select(o => o.End).DefaultIfEmpty(0).Max();
        return end > upper - blockSize && end <= upper ? end : upper;
    }

    /// <summary>
    /// Whether the hash list says zeros for a stretch, read a batch at a time (a spilled list is
    /// a file; a sparse 4 TiB volume has 134 million blocks) through one buffer for the whole check.
    /// </summary>
    private sealed class ZeroHashCheck(BlockHashList hashes, int blockSize, long volumeSize)
    {
        private const int Batch = 4096;
        private readonly byte[] _buffer = new byte[Batch * BlockHashList.HashSize];

        /// <summary>The volume offset of the first block in <paramref name="range"/> that the list says holds data.</summary>
        public long? FirstDataBlock(ByteRange range)
        {
            var first = range.Start / blockSize;
            var end = (range.End + blockSize - 1) / blockSize;
            for (var b = first; b < end; b += Batch)
            {
                var n = (int)Math.Min(Batch, end - b);
                hashes.Get(b, _buffer.AsSpan(0, n * BlockHashList.HashSize));
                for (var k = 0; k < n; k++)
                {
                    var length = (int)Math.Min(blockSize, volumeSize - (b + k) * blockSize);
                    if (!_buffer.AsSpan(k * BlockHashList.HashSize, BlockHashList.HashSize).SequenceEqual(ZeroBlock.Sha256(length)))
                    {
                        return (b + k) * blockSize;
                    }
                }
            }

            return null;
        }
    }

    /// <summary>Per-thread buffers and counters.</summary>
    private sealed class Worker(int pieceSize, int blockSize)
    {
        private readonly byte[] _piece = new byte[pieceSize];
        private readonly byte[] _expected = new byte[pieceSize / blockSize * 32];
        private readonly byte[] _zero = new byte[pieceSize];

        public long Written { get; private set; }
        public long ZeroBytes { get; private set; }
        public long Verified { get; private set; }

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)] // hot loop: skip tier-0 code
        public void Restore(ObjectStores.IObjectStore store, Func<RestoreTask, string> keyOf, RestoreTask task, RestoreTarget target, BlockHashList hashes, long volumeSize, ProgressThrottle throttle, CancellationToken cancel)
        {
            var o = task.Object;
            using var file = store.GetAsync(keyOf(task), 0, null, cancel).GetAwaiter().GetResult();
            using var data = ObjectDecoder.Open(file, o.Compression, o.Name);
            long position = o.Offset; // volume offset of the next decompressed byte
            try
            {
                // Walk the object piece by piece; a piece may hold the end of one needed range and
                // the start of the next, so every needed range overlapping it is applied.
                var next = 0;
                while (next < task.Needed.Count)
                {
                    cancel.ThrowIfCancellationRequested();
                    // Pieces stay aligned to the object's start, hence to hash blocks.
                    var n = (int)Math.Min(_piece.Length, o.End - position);
                    var got = data.ReadAtLeast(_piece.AsSpan(0, n), n, throwOnEndOfStream: false);
                    if (got < n)
                    {
                        throw Corrupt(task, position + got, $"its data ends after {position + got - o.Offset} of the {o.Length} bytes the metadata states (truncated object)");
                    }

                    var pieceStart = position;
                    position += n;
                    for (var r = next; r < task.Needed.Count && task.Needed[r].Start < position; r++)
                    {
                        var from = Math.Max(pieceStart, task.Needed[r].Start);
                        var to = Math.Min(position, task.Needed[r].End);
                        if (to > from)
                        {
                            Apply(task, target, hashes, volumeSize, _piece.AsSpan((int)(from - pieceStart), (int)(to - from)), from);
                            throttle.Add(to - from);
                        }
                    }

                    while (next < task.Needed.Count && task.Needed[next].End <= position)
                    {
                        next++;
                    }
                }

                if (position == o.End && data.ReadByte() >= 0)
                {
                    throw Corrupt(task, o.End, $"it decompresses to more than the {o.Length} bytes the metadata states");
                }
            }
            catch (Exception ex) when (ex is InvalidDataException or ICSharpCode.SharpZipLib.SharpZipBaseException or EndOfStreamException)
            {
                throw Corrupt(task, position, $"its {CompressionNames.ToMetadataName(o.Compression)} data is corrupt ({ex.Message})", ex);
            }
        }

        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)] // hot loop: skip tier-0 code
        private void Apply(RestoreTask task, RestoreTarget target, BlockHashList hashes, long volumeSize, ReadOnlySpan<byte> data, long offset)
        {
            var firstBlock = offset / blockSize;
            var count = (int)((data.Length + blockSize - 1) / blockSize);
            var expected = _expected.AsSpan(0, count * 32);
            hashes.Get(firstBlock, expected);
            Span<byte> actual = stackalloc byte[32];
            var runStart = 0;
            var runZero = false;
            for (var k = 0; k <= count; k++)
            {
                var isZero = false;
                if (k < count)
                {
                    var block = data.Slice(k * blockSize, Math.Min(blockSize, data.Length - k * blockSize));
                    isZero = Hashing.ZeroBlock.IsZero(block);
                    ReadOnlySpan<byte> hash = isZero ? Hashing.ZeroBlock.Sha256(block.Length) : actual;
                    if (!isZero)
                    {
                        SHA256.HashData(block, actual);
                    }

                    if (!hash.SequenceEqual(expected.Slice(k * 32, 32)))
                    {
                        throw new BackupException(BackupErrorKind.InvalidData, "BlockHashMismatch",
                            $"Backup {task.BackupId}: object '{task.Object.Name}' gives data at volume offset {offset + (long)k * blockSize} whose SHA-256 does not match the backup's hash list. The backup is damaged.",
                            task.Object.Name);
                    }

                    if (k == 0)
                    {
                        runZero = isZero;
                    }
                }

                // Flush the current run when the zero/data kind changes or at the end: one write
                // (or one hole punch) per run, not per block.
                if (k == count || isZero != runZero)
                {
                    var s = runStart * blockSize;
                    var e = Math.Min(k * blockSize, data.Length);
                    if (e > s)
                    {
                        if (runZero)
                        {
                            target.Zero(offset + s, e - s, _zero);
                            ZeroBytes += e - s;
                        }
                        else
                        {
                            target.Write(data[s..e], offset + s);
                            Written += e - s;
                        }
                    }

                    runStart = k;
                    runZero = isZero;
                }
            }

            Verified += count;
        }

        private static BackupException Corrupt(RestoreTask task, long volumeOffset, string what, Exception? inner = null) =>
            new(BackupErrorKind.InvalidData, "ObjectCorrupt",
                $"Backup {task.BackupId}: object '{task.Object.Name}' (volume offset {task.Object.Offset}, near {volumeOffset}): {what}. The target is incomplete; restore from another backup.",
                task.Object.Name, inner);
    }
}
