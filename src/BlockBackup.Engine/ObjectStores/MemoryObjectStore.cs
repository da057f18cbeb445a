using System.Collections.Concurrent;
using System.Runtime.CompilerServices;

namespace BlockBackup.Engine.ObjectStores;

/// <summary>An object store in memory, for tests of the format and pipelines above the seam.</summary>
public sealed class MemoryObjectStore : IObjectStore
{
    private readonly ConcurrentDictionary<string, byte[]> objects = new(StringComparer.Ordinal);

    public ObjectStoreProperties Properties { get; } = new(Connections: 8, HasAtomicCreateOnly: true, Description: "the in-memory store");

    public async Task PutAsync(string name, Stream content, long length, PutOptions options, CancellationToken cancellationToken)
    {
        ObjectNames.Validate(name, Properties.Description);
        var buffer = new MemoryStream();
        await content.CopyToAsync(buffer, cancellationToken).ConfigureAwait(false);
        if (buffer.Length != length)
        {
            throw ObjectNames.ShortContent(name, length, buffer.Length);
        }

        if (options.CreateOnly)
        {
            if (!objects.TryAdd(name, buffer.ToArray()))
            {
                throw ObjectNames.Exists(name, Properties.Description);
            }
        }
        else
        {
            objects[name] = buffer.ToArray();
        }
    }

    public Task<Stream> GetAsync(string name, long offset = 0, long? length = null, CancellationToken cancellationToken = default)
    {
        ObjectNames.Validate(name, Properties.Description);
        if (!objects.TryGetValue(name, out var data))
        {
            throw ObjectNames.NotFound(name, Properties.Description);
        }

        var start = (int)Math.Min(offset, data.Length);
        var count = (int)Math.Min(length ?? long.MaxValue, data.Length - start);
        return Task.FromResult<Stream>(new MemoryStream(data, start, count, writable: false));
    }

    public Task<ObjectInfo?> StatAsync(string name, CancellationToken cancellationToken = default)
    {
        ObjectNames.Validate(name, Properties.Description);
        return Task.FromResult(objects.TryGetValue(name, out var data) ? new ObjectInfo(name, data.Length) : null);
    }

    public async IAsyncEnumerable<ObjectInfo> ListAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        foreach (var (name, data) in objects.Where(o => o.Key.StartsWith(prefix, StringComparison.Ordinal)).OrderBy(o => o.Key, StringComparer.Ordinal).ToList())
        {
            cancellationToken.ThrowIfCancellationRequested();
            yield return new ObjectInfo(name, data.Length);
        }

        await Task.CompletedTask.ConfigureAwait(false);
    }

    public Task DeleteAsync(string name, CancellationToken cancellationToken = default)
    {
        ObjectNames.Validate(name, Properties.Description);
        objects.TryRemove(name, out _);
        return Task.CompletedTask;
    }

    public Task FlushAsync(CancellationToken cancellationToken = default) => Task.CompletedTask;
}
