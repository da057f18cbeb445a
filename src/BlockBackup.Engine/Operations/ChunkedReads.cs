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

        return Sha256File.Read(stream, info.Size, display, backup.Id, metadata.Extra?.Sha256FileSha256, WorkDirectory.Path, cancellationToken);
    }

    /// <summary>The store names of every object the backup has in its repository (one listing, not one request per object).</summary>
    public static HashSet<string> ListObjects(IChunkedRepository repository, BackupInfo backup, CancellationToken cancellationToken)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        var enumerator = repository.Store.ListAsync(repository.ObjectKey(backup.Container, backup.Prefix), cancellationToken).GetAsyncEnumerator(cancellationToken);
        try
        {
            while (enumerator.MoveNextAsync().AsTask().GetAwaiter().GetResult())
            {
                names.Add(enumerator.Current.Name);
            }
        }
        finally
        {
            enumerator.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }

        return names;
    }
}
