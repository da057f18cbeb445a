using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Format;
using BlockBackup.Engine.Hashing;
using BlockBackup.Engine.Repository;

namespace BlockBackup.Engine.Operations;

/// <summary>Reading a chunked backup's side files through its repository's store, for every pipeline.</summary>
internal static class ChunkedReads
{
    /// <summary>A backup's hash list, checked against the checksum its metadata records (when it records one).</summary>
    public static (Sha256FileHeader Header, BlockHashList Hashes) ReadHashList(IChunkedRepository repository, BackupInfo backup, BackupMetadata metadata, CancellationToken cancellationToken)
    {
        var key = repository.ObjectKey(backup.Container, ObjectNaming.Sha256FileName(backup.Prefix));
        var display = repository.DisplayName(key);
        var store = repository.Store;
        var info = store.StatAsync(key, cancellationToken).GetAwaiter().GetResult()
            ?? throw new BackupException(BackupErrorKind.NotFound, "Sha256FileNotFound", $"The hash list '{display}' of backup {backup.Id} is missing; the backup is incomplete or damaged.", display);
        Stream stream;
        try
        {
            stream = store.GetAsync(key, 0, null, cancellationToken).GetAwaiter().GetResult();
        }
        catch (BackupException ex) when (ex.Kind == BackupErrorKind.NotFound)
        {
            throw new BackupException(BackupErrorKind.NotFound, "Sha256FileNotFound", $"The hash list '{display}' of backup {backup.Id} is missing; the backup is incomplete or damaged.", display, ex);
        }

        var (header, hashes) = Sha256File.Read(stream, info.Size, display, backup.Id, metadata.Extra?.Sha256FileSha256, WorkDirectory.Path, cancellationToken);
        if (metadata.Extra is { } extra && header.ChunkSize != extra.HashBlockSize)
        {
            // Every block offset would be misread (the list's index is offset / block size).
            hashes.Dispose();
            throw new BackupException(BackupErrorKind.InvalidData, "HashListBlockSizeMismatch",
                $"The hash list '{display}' of backup {backup.Id} hashes blocks of {header.ChunkSize} bytes, but the backup's metadata says {extra.HashBlockSize}; the backup is damaged and cannot be verified or restored. Restore another backup of the volume.", display);
        }

        return (header, hashes);
    }

    /// <summary>
    /// The objects carrying the backup's prefix in its repository, by one listing rather than one
    /// request per object: as compact name keys (<see cref="ObjectDescriptor.NameKey"/>), since a
    /// 4 TiB backup has half a million of them, plus the few names that are not data objects.
    /// </summary>
    public static ObjectSet ListObjects(IChunkedRepository repository, BackupInfo backup, CancellationToken cancellationToken)
    {
        var set = new ObjectSet(repository.ObjectKey(backup.Container, string.Empty));
        var enumerator = repository.Store.ListUnorderedAsync(repository.ObjectKey(backup.Container, backup.Prefix), cancellationToken).GetAsyncEnumerator(cancellationToken);
        try
        {
            while (enumerator.MoveNextAsync().AsTask().GetAwaiter().GetResult())
            {
                set.Add(enumerator.Current.Name);
            }
        }
        finally
        {
            enumerator.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }

        return set;
    }

    /// <summary>The objects of one backup's container that a listing found.</summary>
    internal sealed class ObjectSet(string containerKey)
    {
        private readonly ObjectNumberSet _objects = new();
        private readonly List<string> _others = new();

        public void Add(string key)
        {
            var name = key[containerKey.Length..];
            var k = ObjectDescriptor.KeyOf(name);
            if (k.Number >= 0)
            {
                _objects.Add(k.Head, k.Number);
            }
            else
            {
                _others.Add(name);
            }
        }

        public bool Contains(ObjectDescriptor o) => o.NameKey.Number >= 0 ? _objects.Contains(o.NameKey.Head, o.NameKey.Number) : _others.Contains(o.Name, StringComparer.Ordinal);

        /// <summary>Names found that are not among <paramref name="listed"/> (nor the side files).</summary>
        public IEnumerable<string> NotIn(IReadOnlyList<ObjectDescriptor> listed, string prefix)
        {
            var known = new ObjectNumberSet();
            foreach (var o in listed)
            {
                if (o.NameKey.Number >= 0)
                {
                    known.Add(o.NameKey.Head, o.NameKey.Number);
                }
            }

            foreach (var (head, number) in _objects.Where(k => !known.Contains(k.Head, k.Number)))
            {
                yield return head + "-" + number.ToString("D5", System.Globalization.CultureInfo.InvariantCulture); // D5 gives back every name the key was made from
            }

            var knownOthers = listed.Where(o => o.NameKey.Number < 0).Select(o => o.Name).Append(ObjectNaming.MetadataName(prefix)).Append(ObjectNaming.Sha256FileName(prefix)).ToHashSet(StringComparer.Ordinal);
            foreach (var name in _others.Where(n => !knownOthers.Contains(n)))
            {
                yield return name;
            }
        }
    }
}
