namespace BlockBackup.Engine.ObjectStores;

/// <summary>
/// The dumb storage under Cinder's chunked format, as restic's backend and Cinder's chunkeddriver
/// store methods are: named objects put whole, read by range, listed by prefix, deleted. The
/// write protocol belongs to the store (POSIX: temporary name, fsync, rename; object stores: one
/// PUT, create-only where supported), so the format code above it is written once. Names use '/'
/// as separator and are relative to the store's root; a store refuses names that could leave it.
/// </summary>
public interface IObjectStore
{
    ObjectStoreProperties Properties { get; }

    /// <summary>
    /// Stores <paramref name="content"/> (exactly <paramref name="length"/> bytes from its current
    /// position) under <paramref name="name"/>; visible only once complete. A seekable
    /// <paramref name="content"/> lets the store retry: it rewinds to the position it was given at.
    /// </summary>
    Task PutAsync(string name, Stream content, long length, PutOptions options, CancellationToken cancellationToken);

    /// <summary>
    /// Stores what <paramref name="write"/> writes (a document whose length is known only once
    /// written, such as a hash list) and returns its length. Object stores need the length and
    /// MD5 before the first byte is sent, so by default the document is spooled to a local work
    /// file first; a store that can write in place (POSIX) overrides this to write it once.
    /// </summary>
    async Task<long> PutWrittenAsync(string name, Action<Stream> write, PutOptions options, CancellationToken cancellationToken)
    {
        var dir = Repository.WorkDirectory.Path;
        Directory.CreateDirectory(dir);
        await using var spool = new FileStream(Path.Combine(dir, $"spool-{Guid.NewGuid():N}.tmp"), FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 16, FileOptions.DeleteOnClose);
        write(spool);
        var length = spool.Length;
        spool.Position = 0;
        await PutAsync(name, spool, length, options, cancellationToken).ConfigureAwait(false);
        return length;
    }

    /// <summary>Reads <paramref name="length"/> bytes (all to the end when null) from <paramref name="offset"/>; ObjectNotFound when absent.</summary>
    Task<Stream> GetAsync(string name, long offset = 0, long? length = null, CancellationToken cancellationToken = default);

    /// <summary>The object's size, or null when there is none.</summary>
    Task<ObjectInfo?> StatAsync(string name, CancellationToken cancellationToken = default);

    /// <summary>
    /// Whether the bucket or container exists (a listing of a missing one is empty, as an absent
    /// directory's is, so only this tells a new repository from a mistyped name). By default one
    /// read of <paramref name="probeName"/>, a name nothing writes: ObjectNotFound means the
    /// container is there, ObjectStoreContainerNotFound that it is not; a credential that may read
    /// objects but not learn that (403) counts as there, since the repository's own requests then
    /// say what is wrong.
    /// </summary>
    async Task<bool> ContainerExistsAsync(string probeName, CancellationToken cancellationToken = default)
    {
        try
        {
            await using var stream = await GetAsync(probeName, 0, 1, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (Errors.BackupException ex) when (ex.ErrorId == "ObjectStoreContainerNotFound")
        {
            return false;
        }
        catch (Errors.BackupException ex) when (ex.ErrorId is "ObjectNotFound" or "ObjectStoreAccessDenied")
        {
            return true;
        }
    }

    /// <summary>Every object whose name starts with <paramref name="prefix"/>, in ordinal name order.</summary>
    IAsyncEnumerable<ObjectInfo> ListAsync(string prefix, CancellationToken cancellationToken = default);

    /// <summary>
    /// <see cref="ListAsync"/> in no particular order, for callers that only gather names into a
    /// set: a store that has to sort (a directory tree) then streams instead of holding every
    /// name of a half-million-object backup at once.
    /// </summary>
    IAsyncEnumerable<ObjectInfo> ListUnorderedAsync(string prefix, CancellationToken cancellationToken = default) => ListAsync(prefix, cancellationToken);

    /// <summary>Deletes an object; deleting one that does not exist is not an error (deletes are retried).</summary>
    Task DeleteAsync(string name, CancellationToken cancellationToken = default);

    /// <summary>
    /// For a caller removing everything under <paramref name="prefix"/>: deletes what interrupted
    /// puts of objects there (those <paramref name="isOwned"/> accepts) left where no listing
    /// shows it (Swift: the segments of a large object whose manifest was never stored). Stores
    /// whose interrupted puts leave nothing outside their listing (or only temporaries they sweep
    /// themselves) do nothing.
    /// </summary>
    Task DeleteUnlistedAsync(string prefix, Func<string, bool> isOwned, CancellationToken cancellationToken = default) => Task.CompletedTask;

    /// <summary>
    /// Makes every object put with <see cref="PutOptions.DeferDurability"/> durable (POSIX: one
    /// file-system sync rather than one fsync per object). Object stores are durable when a PUT
    /// returns, so for them this does nothing.
    /// </summary>
    Task FlushAsync(CancellationToken cancellationToken = default);
}

/// <param name="Connections">How many requests the store serves well at once (the pipelines' concurrency bound).</param>
/// <param name="HasAtomicCreateOnly">Whether <see cref="PutOptions.CreateOnly"/> is atomic (POSIX rename without replace, S3 If-None-Match).</param>
/// <param name="Description">How the store is named in messages.</param>
/// <param name="CheapStat">A stat costs a system call, not a request (POSIX): checking objects one by one beats holding a listing of half a million names.</param>
public sealed record ObjectStoreProperties(int Connections, bool HasAtomicCreateOnly, string Description, bool CheapStat = false);

/// <param name="CreateOnly">Fail with ObjectExists rather than replace an existing object (the commit point: a backup's metadata).</param>
/// <param name="ContentMd5">The MD5 of the bytes sent, for stores that check it (S3 Content-MD5, Swift ETag); computed by the store when null.</param>
/// <param name="DeferDurability">The caller calls <see cref="IObjectStore.FlushAsync"/> before anything refers to the object (a backup's data objects, before its metadata).</param>
public sealed record PutOptions(bool CreateOnly = false, byte[]? ContentMd5 = null, bool DeferDurability = false)
{
    public static readonly PutOptions Default = new();
}

public sealed record ObjectInfo(string Name, long Size);
