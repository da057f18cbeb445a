using BlockBackup.Engine.ObjectStores;

namespace BlockBackup.Engine.Tests;

/// <summary>
/// A store that passes everything through to another and cancels a token once a put whose name
/// matches has completed: an interruption at a chosen point of a backup, not at whatever moment a
/// polling watcher happens to see (a small backup can finish before a watcher gets round to it).
/// The put itself completes, so the operation must notice the cancellation on its own.
/// </summary>
internal sealed class CancelAfterPutStore(IObjectStore inner, Func<string, bool> trigger, CancellationTokenSource cancel) : IObjectStore
{
    public ObjectStoreProperties Properties => inner.Properties;

    public async Task PutAsync(string name, Stream content, long length, PutOptions options, CancellationToken cancellationToken)
    {
        await inner.PutAsync(name, content, length, options, cancellationToken).ConfigureAwait(false);
        if (trigger(name))
        {
            await cancel.CancelAsync().ConfigureAwait(false);
        }
    }

    public async Task<long> PutWrittenAsync(string name, Action<Stream> write, PutOptions options, CancellationToken cancellationToken)
    {
        var length = await inner.PutWrittenAsync(name, write, options, cancellationToken).ConfigureAwait(false);
        if (trigger(name))
        {
            await cancel.CancelAsync().ConfigureAwait(false);
        }

        return length;
    }

    public Task<Stream> GetAsync(string name, long offset = 0, long? length = null, CancellationToken cancellationToken = default) =>
        inner.GetAsync(name, offset, length, cancellationToken);

    public Task<ObjectInfo?> StatAsync(string name, CancellationToken cancellationToken = default) => inner.StatAsync(name, cancellationToken);

    public IAsyncEnumerable<ObjectInfo> ListAsync(string prefix, CancellationToken cancellationToken = default) => inner.ListAsync(prefix, cancellationToken);

    public IAsyncEnumerable<ObjectInfo> ListUnorderedAsync(string prefix, CancellationToken cancellationToken = default) =>
        inner.ListUnorderedAsync(prefix, cancellationToken);

    public Task DeleteAsync(string name, CancellationToken cancellationToken = default) => inner.DeleteAsync(name, cancellationToken);

    public Task DeleteUnlistedAsync(string prefix, Func<string, bool> isOwned, CancellationToken cancellationToken = default) =>
        inner.DeleteUnlistedAsync(prefix, isOwned, cancellationToken);

    public Task FlushAsync(CancellationToken cancellationToken = default) => inner.FlushAsync(cancellationToken);
}
