using Newtonsoft.Json;
using Newtonsoft.Json.Converters;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Security.Cryptography;
using BlockBackup.Engine.Compression;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Format;
using BlockBackup.Engine.Hashing;
using BlockBackup.Engine.Repository;

namespace BlockBackup.Engine.Operations;

[JsonConverter(typeof(StringEnumConverter))]
public enum VerificationProblem
{
    MetadataInvalid,
    HashListInvalid,
    ObjectMissing,
    /// <summary>A symbolic link stands where the object should be: never followed, so the object cannot be read.</summary>
    ObjectPathIsSymbolicLink,
    UnexpectedObject,
    ObjectTruncated,
    ObjectTooLong,
    DecompressionFailed,
    Md5Mismatch,
    BlockHashMismatch,
    ChainInconsistent,
}

/// <summary>One thing wrong with a backup: which object, where in the volume, what.</summary>
public sealed record VerificationIssue(Guid BackupId, string? ObjectName, long? VolumeOffset, VerificationProblem Problem, string Message)
{
    public override string ToString() => $"{Problem}: {Message}";
}

public sealed class VerificationResult
{
    public required BackupInfo Backup { get; init; }
    /// <summary>The checked backup's id and repository, so results pipe on by property name (e.g. into Remove-VolumeBackup).</summary>
    public Guid BackupId => Backup.Id;
    public string Repository => Backup.Repository;
    /// <summary>The backups whose data was read (the whole chain when the chain was verified).</summary>
    public required IReadOnlyList<Guid> Verified { get; init; }
    public required int ObjectsChecked { get; init; }
    public required long BytesChecked { get; init; }
    public required IReadOnlyList<VerificationIssue> Issues { get; init; }
    public bool IsValid => Issues.Count == 0;
    public required TimeSpan Duration { get; init; }

    public override string ToString() => IsValid
        ? $"{Backup.Id}: OK ({ObjectsChecked} objects, {Verified.Count} backup(s))"
        : $"{Backup.Id}: {Issues.Count} problem(s): {string.Join("; ", Issues.Take(3))}";
}

/// <summary>
/// Reads every object of a backup (or of its whole chain), decompresses it, and checks its length,
/// its MD5 and the SHA-256 of each of its blocks against the backup's hash list; reports every
/// bad object instead of stopping at the first.
/// </summary>
public static class VerifyOperation
{
    // onlyObjects: check only these objects (a sample); the metadata, hash list and object set are still checked.
    public static VerificationResult Run(IChunkedRepository repository, Guid backupId, bool includeChain, IProgress<OperationProgress>? progress = null, CancellationToken cancellationToken = default, int? workers = null,
        IReadOnlySet<string>? onlyObjects = null)
    {
        var clock = Stopwatch.StartNew();
        var backup = repository.Get(backupId);
        var issues = new ConcurrentBag<VerificationIssue>();
        BackupChain? chain = null;
        if (includeChain)
        {
            try
            {
                chain = repository.GetChain(backupId);
            }
            catch (BackupException ex)
            {
                issues.Add(new VerificationIssue(backupId, null, null, VerificationProblem.ChainInconsistent, ex.Message));
            }
        }

        var scope = chain?.Backups ?? [backup];
        using var reading = repository.BeginRead(backup.VolumeId, scope.Select(b => b.Id).ToList(), "verification", cancellationToken);
        var total = scope.Sum(b => b.VolumeSize);
        var throttle = new ProgressThrottle(progress, OperationPhase.Verifying, Math.Max(1, total), $"Verifying {backupId}");
        var objects = 0;
        long bytes = 0;
        var lists = new List<(BackupInfo Backup, BackupMetadata? Metadata, BlockHashList? Hashes, int BlockSize)>();
        try
        {
            foreach (var b in scope)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var (meta, hashes, blockSize) = Load(repository, b, issues, cancellationToken);
                lists.Add((b, meta, hashes, blockSize));
                if (meta is null || hashes is null)
                {
                    continue;
                }

                var present = ChunkedReads.ListObjects(repository, b, cancellationToken);
                CheckObjectSet(repository, b, meta, present, issues);
                var options = new ParallelOptions { MaxDegreeOfParallelism = workers ?? Environment.ProcessorCount, CancellationToken = cancellationToken };
                var selected = onlyObjects is null ? meta.Objects : meta.Objects.Where(o => onlyObjects.Contains(o.Name)).ToList();
                Parallel.ForEach(Partitioner.Create(selected, EnumerablePartitionerOptions.NoBuffering), options, o =>
                {
                    CheckObject(repository.Store, b, repository.ObjectKey(b.Container, o.Name), present.Contains(o), o, hashes, blockSize, issues, throttle, cancellationToken);
                    Interlocked.Increment(ref objects);
                    Interlocked.Add(ref bytes, o.Length);
                });
            }

            if (chain is not null && lists.All(l => l.Hashes is not null))
            {
                CheckComposite(chain, lists.Select(l => (l.Metadata!, l.Hashes!)).ToList(), lists[^1].BlockSize, issues, cancellationToken);
            }
        }
        catch (AggregateException ex)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(ex.InnerExceptions[0]).Throw();
        }
        finally
        {
            foreach (var l in lists)
            {
                l.Hashes?.Dispose();
            }
        }

        throttle.Complete();
        return new VerificationResult
        {
            Backup = backup,
            Verified = scope.Select(b => b.Id).ToList(),
            ObjectsChecked = objects,
            BytesChecked = bytes,
            Issues = issues.OrderBy(i => i.VolumeOffset ?? -1).ThenBy(i => i.ObjectName, StringComparer.Ordinal).ToList(),
            Duration = clock.Elapsed,
        };
    }

    private static (BackupMetadata?, BlockHashList?, int) Load(IChunkedRepository repository, BackupInfo b, ConcurrentBag<VerificationIssue> issues, CancellationToken cancel)
    {
        BackupMetadata meta;
        try
        {
            meta = repository.ReadMetadata(b);
        }
        catch (BackupException ex)
        {
            issues.Add(new VerificationIssue(b.Id, ObjectNaming.MetadataName(b.Prefix), null, VerificationProblem.MetadataInvalid, ex.Message));
            return (null, null, 0);
        }

        try
        {
            var (header, hashes) = ChunkedReads.ReadHashList(repository, b, meta, cancel);
            var expected = (b.VolumeSize + header.ChunkSize - 1) / header.ChunkSize;
            if (b.VolumeSize > 0 && hashes.Count != expected)
            {
                issues.Add(new VerificationIssue(b.Id, ObjectNaming.Sha256FileName(b.Prefix), null, VerificationProblem.HashListInvalid,
                    $"the hash list has {hashes.Count} entries but the {b.VolumeSize}-byte volume has {expected} blocks"));
            }

            return (meta, hashes, header.ChunkSize);
        }
        catch (BackupException ex)
        {
            issues.Add(new VerificationIssue(b.Id, ObjectNaming.Sha256FileName(b.Prefix), null, VerificationProblem.HashListInvalid, ex.Message));
            return (meta, null, 0);
        }
    }

    /// <summary>Cinder aborts a restore when the objects carrying the prefix differ from the metadata's list.</summary>
    private static void CheckObjectSet(IChunkedRepository repository, BackupInfo b, BackupMetadata meta, ChunkedReads.ObjectSet present, ConcurrentBag<VerificationIssue> issues)
    {
        foreach (var name in present.NotIn(meta.Objects, b.Prefix).Order(StringComparer.Ordinal))
        {
            var leaf = name[(name.LastIndexOf('/') + 1)..];
            issues.Add(new VerificationIssue(b.Id, leaf, null, VerificationProblem.UnexpectedObject,
                $"'{repository.DisplayName(repository.ObjectKey(b.Container, name))}' carries the backup's prefix but is not in its metadata; Cinder would refuse to restore this backup. Remove it."));
        }
    }

    private static void CheckObject(ObjectStores.IObjectStore store, BackupInfo b, string key, bool exists, ObjectDescriptor o, BlockHashList hashes, int blockSize, ConcurrentBag<VerificationIssue> issues, ProgressThrottle throttle, CancellationToken cancel)
    {
        void Report(VerificationProblem p, long? offset, string message) =>
            issues.Add(new VerificationIssue(b.Id, o.Name, offset ?? o.Offset, p, $"object '{o.Name}' at volume offset {offset ?? o.Offset}: {message}"));

        if (!exists)
        {
            // Listings leave out what a store never reads (a symbolic link in a directory
            // repository); asking for the one name says which of the two it is.
            try
            {
                store.StatAsync(key, cancel).GetAwaiter().GetResult();
                Report(VerificationProblem.ObjectMissing, null, "the object is missing");
            }
            catch (BackupException ex) when (ex.ErrorId == "ObjectPathIsSymbolicLink")
            {
                Report(VerificationProblem.ObjectPathIsSymbolicLink, null, $"{ex.Message} Replace the link with the object itself.");
            }

            return;
        }

        if (IsCanonicalZeros(store, key, o, cancel))
        {
            // The stored bytes are exactly BlockBackup's encoding of that many zeros: they decode to
            // zeros without inflating them; the hash list must still say zeros for every block.
            // One read of the object's hashes, not one per block: a spilled list is a file.
            var first = o.Offset / blockSize;
            var blocks = (int)((o.Length + blockSize - 1) / blockSize);
            var listed = (int)Math.Clamp(hashes.Count - first, 0, blocks);
            var rented = System.Buffers.ArrayPool<byte>.Shared.Rent(Math.Max(1, listed * 32));
            try
            {
                if (listed > 0)
                {
                    hashes.Get(first, rented.AsSpan(0, listed * 32)); // none when the object lies beyond the list: reported below
                }

                for (var k = 0; k < blocks; k++)
                {
                    var offset = (first + k) * blockSize;
                    var length = (int)Math.Min(blockSize, o.End - offset);
                    if (k >= listed)
                    {
                        Report(VerificationProblem.BlockHashMismatch, offset, "the block lies beyond the hash list");
                        return;
                    }

                    if (!ZeroBlock.Sha256(length).SequenceEqual(rented.AsSpan(k * 32, 32)))
                    {
                        Report(VerificationProblem.BlockHashMismatch, offset, $"the object holds zeros but the hash list says the {length}-byte block holds data");
                        return;
                    }
                }
            }
            finally
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(rented);
            }

            throttle.Add(o.Length);
            return;
        }

        // Pooled: a sparse volume has hundreds of thousands of objects, a fresh 1 MiB each was
        // large-object-heap garbage faster than it was collected.
        var pieceLength = Math.Max(blockSize, (1 << 20) / blockSize * blockSize);
        var piece = System.Buffers.ArrayPool<byte>.Shared.Rent(pieceLength);
        var pieceHashes = System.Buffers.ArrayPool<byte>.Shared.Rent(pieceLength / blockSize * 32);
        try
        {
            CheckObjectData(store, key, o, hashes, blockSize, pieceLength, piece, pieceHashes, Report, throttle, cancel);
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(piece);
            System.Buffers.ArrayPool<byte>.Shared.Return(pieceHashes);
        }
    }

    /// <summary>Decodes the object piece by piece and checks length, MD5 (or zeros) and every block's SHA-256.</summary>
    private static void CheckObjectData(ObjectStores.IObjectStore store, string key, ObjectDescriptor o, BlockHashList hashes, int blockSize, int pieceLength, byte[] piece, byte[] pieceHashes,
        Action<VerificationProblem, long?, string> report, ProgressThrottle throttle, CancellationToken cancel)
    {
        var actual = new byte[32];
        using var md5 = IncrementalHash.CreateHash(HashAlgorithmName.MD5);
        // An object the metadata says is zeros (a hole or zero run) is checked for zeros, which is
        // as good as its MD5 and ~50x cheaper: a sparse 1 TiB volume is thousands of such objects.
        var zeroObject = ZeroBlock.IsZeroObject(o);
        long? firstData = null;
        long done = 0;
        var hashMismatches = 0;
        try
        {
            using var file = store.GetAsync(key, 0, null, cancel).GetAwaiter().GetResult();
            using var data = ObjectDecoder.Open(file, o.Compression, o.Name);
            while (done < o.Length)
            {
                cancel.ThrowIfCancellationRequested();
                var want = (int)Math.Min(pieceLength, o.Length - done);
                var got = data.ReadAtLeast(piece.AsSpan(0, want), want, throwOnEndOfStream: false);
                if (!zeroObject)
                {
                    md5.AppendData(piece, 0, got);
                }
                else if (firstData is null && piece.AsSpan(0, got).IndexOfAnyExcept((byte)0) is >= 0 and var at)
                {
                    firstData = o.Offset + done + at;
                }

                // The piece's hashes in one read (a spilled list is a file), as far as the list goes.
                var firstIndex = (o.Offset + done) / blockSize;
                var listed = (int)Math.Clamp(hashes.Count - firstIndex, 0, (got + blockSize - 1) / blockSize);
                if (listed > 0)
                {
                    hashes.Get(firstIndex, pieceHashes.AsSpan(0, listed * 32)); // none beyond the list: reported below
                }

                for (var k = 0; k * blockSize < got; k++)
                {
                    var block = piece.AsSpan(k * blockSize, Math.Min(blockSize, got - k * blockSize));
                    var offset = o.Offset + done + (long)k * blockSize;
                    if (k >= listed)
                    {
                        report(VerificationProblem.BlockHashMismatch, offset, "the block lies beyond the hash list");
                        return;
                    }

                    var expected = pieceHashes.AsSpan(k * 32, 32);
                    if (block.Length < blockSize && offset + block.Length < o.End)
                    {
                        break; // truncated; reported below
                    }

                    if (ZeroBlock.IsZero(block) ? !ZeroBlock.Sha256(block.Length).SequenceEqual(expected) : !SHA256.HashData(block).AsSpan().SequenceEqual(expected))
                    {
                        if (hashMismatches++ < 8)
                        {
                            report(VerificationProblem.BlockHashMismatch, offset, $"the {block.Length}-byte block's SHA-256 does not match the hash list");
                        }
                    }
                }

                done += got;
                throttle.Add(got);
                if (got < want)
                {
                    report(VerificationProblem.ObjectTruncated, o.Offset + done, $"the data ends after {done} of {o.Length} bytes");
                    return;
                }
            }

            if (data.ReadByte() >= 0)
            {
                report(VerificationProblem.ObjectTooLong, o.End, $"the data is longer than the stated {o.Length} bytes");
                return;
            }
        }
        catch (Exception ex) when (ex is InvalidDataException or ICSharpCode.SharpZipLib.SharpZipBaseException or EndOfStreamException or IOException)
        {
            report(VerificationProblem.DecompressionFailed, o.Offset + done, $"reading the {CompressionNames.ToMetadataName(o.Compression)} data failed after {done} bytes: {ex.Message}");
            return;
        }
        catch (BackupException ex) when (ex.ErrorId == "ZstdUnavailable")
        {
            report(VerificationProblem.DecompressionFailed, null, ex.Message);
            return;
        }

        if (zeroObject)
        {
            if (firstData is { } at)
            {
                report(VerificationProblem.Md5Mismatch, at, $"the metadata's MD5 says the object holds {o.Length} zero bytes, but it holds data at volume offset {at}");
            }

            return;
        }

        var digest = Convert.ToHexString(md5.GetHashAndReset()).ToLowerInvariant();
        if (digest != o.Md5)
        {
            report(VerificationProblem.Md5Mismatch, null, $"MD5 of the data is {digest}, the metadata says {o.Md5}");
        }
    }

    private static readonly ConcurrentDictionary<long, byte[]?> CanonicalZeros = new();

    /// <summary>
    /// True when a zlib object the metadata says is zeros is stored as exactly the bytes
    /// BlockBackup's encoder makes for that many zeros (one deflated run, its Adler-32): a few KB
    /// compared instead of megabytes inflated. Anything else (Cinder's own encoding, bz2, zstd,
    /// damage) is decoded and checked in full.
    /// </summary>
    private static bool IsCanonicalZeros(ObjectStores.IObjectStore store, string key, ObjectDescriptor o, CancellationToken cancel)
    {
        if (o.Compression != CompressionAlgorithm.Zlib || !ZeroBlock.IsZeroObject(o) || o.Length < (1 << 20))
        {
            return false;
        }

        var canonical = CanonicalZeros.GetOrAdd(o.Length, static n =>
        {
            var zeros = new byte[n];
            var output = new byte[n];
            var (used, length) = new ObjectEncoder(CompressionAlgorithm.Zlib).Encode(zeros, output);
            return used == CompressionAlgorithm.Zlib ? output[..length] : null;
        });
        if (canonical is null)
        {
            return false;
        }

        var stored = new byte[canonical.Length + 1];
        using var file = store.GetAsync(key, 0, canonical.Length + 1, cancel).GetAwaiter().GetResult();
        var got = file.ReadAtLeast(stored, stored.Length, throwOnEndOfStream: false);
        return got == canonical.Length && stored.AsSpan(0, got).SequenceEqual(canonical);
    }

    /// <summary>
    /// The requested backup's hash list must agree, block by block, with the list of the backup
    /// whose object provides that block on restore (and be a zero block where nothing does).
    /// </summary>
    private static void CheckComposite(BackupChain chain, IReadOnlyList<(BackupMetadata Metadata, BlockHashList Hashes)> layers, int blockSize, ConcurrentBag<VerificationIssue> issues, CancellationToken cancel)
    {
        var requested = layers[^1].Hashes;
        var size = chain.VolumeSize;
        // Hashes are compared a batch at a time: a spilled list is a file, and a 1 TiB chain has
        // 33 million blocks (one read per block took minutes).
        const int Batch = 4096;
        var a = new byte[Batch * 32];
        var e = new byte[Batch * 32];
        var reported = 0;
        var ordered = layers.Select(l => ObjectOrder.ByOffset(l.Metadata.Objects)).ToList();
        foreach (var segment in ChainSweep.Segments(ordered, size))
        {
            if (reported >= 8)
            {
                break;
            }

            if (segment.Layer == layers.Count - 1)
            {
                continue; // the requested backup's own objects: checked against its list object by object
            }

            var layer = segment.Object is null ? null : layers[segment.Layer].Hashes;
            var end = Math.Min((segment.End + blockSize - 1) / blockSize, Math.Min(layer?.Count ?? long.MaxValue, requested.Count));
            for (var blk = segment.Start / blockSize; blk < end && reported < 8; blk += Batch)
            {
                cancel.ThrowIfCancellationRequested();
                var n = (int)Math.Min(Batch, end - blk);
                layer?.Get(blk, a.AsSpan(0, n * 32));
                requested.Get(blk, e.AsSpan(0, n * 32));
                for (var k = 0; k < n && reported < 8; k++)
                {
                    var offset = (blk + k) * blockSize;
                    var provided = layer is null ? ZeroBlock.Sha256((int)Math.Min(blockSize, size - offset)) : a.AsSpan(k * 32, 32);
                    if (provided.SequenceEqual(e.AsSpan(k * 32, 32)))
                    {
                        continue;
                    }

                    reported++;
                    issues.Add(layer is null
                        ? new VerificationIssue(chain.BackupId, null, offset, VerificationProblem.ChainInconsistent,
                            $"block at volume offset {offset} holds data according to the hash list, but no object in the chain covers it")
                        : new VerificationIssue(chain.Backups[segment.Layer].Id, null, offset, VerificationProblem.ChainInconsistent,
                            $"block at volume offset {offset} comes from backup {chain.Backups[segment.Layer].Id}, whose hash differs from backup {chain.BackupId}'s list: the chain does not restore to the requested backup"));
                }
            }
        }
    }
}
