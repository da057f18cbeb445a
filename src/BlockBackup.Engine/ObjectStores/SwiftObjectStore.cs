using System.Net;
using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using BlockBackup.Engine.Errors;

namespace BlockBackup.Engine.ObjectStores;

/// <summary>
/// An OpenStack Swift container (or Ceph RGW's Swift API) as an object store, speaking the few
/// HTTP calls Cinder's swift backup driver uses, over plain HttpClient:
/// <list type="bullet">
/// <item>auth v1 (GET the auth URL with X-Auth-User/X-Auth-Key: X-Storage-Url + X-Auth-Token) or
/// Keystone v3 (password auth scoped to a project, the object-store endpoint from the catalog);
/// a token refused with 401 is renewed once and the request sent again;</item>
/// <item>PUT with Content-Length and an ETag header (the MD5 of the bytes) so the server checks them
/// (422 otherwise), and the returned etag compared; the container is created (PUT) when missing;</item>
/// <item>ranged GET, HEAD, DELETE (404 is fine), JSON listings paged by marker.</item>
/// </list>
/// Create-only is best effort: Swift (RGW included) ignores If-None-Match on PUT, so the store
/// checks with a HEAD and then PUTs; two writers racing for one name can both succeed
/// (<see cref="ObjectStoreProperties.HasAtomicCreateOnly"/> is false). Objects larger than
/// <see cref="SwiftStoreOptions.MaxObjectSize"/> are stored as static large objects (segments in
/// <c>&lt;container&gt;_segments</c>, then the manifest) and deleted with the segments named as
/// this store names them for that key, never with whatever a manifest lists. Throttling,
/// 5xx and network errors are retried with backoff when the content can be sent again (seekable).
/// </summary>
public sealed partial class SwiftObjectStore : IObjectStore, IDisposable
{
    private const int ListPageSize = 1000;
    private readonly SwiftStoreOptions options;
    private readonly HttpClient http;
    private readonly string prefix;
    private readonly bool keystone;
    private readonly SemaphoreSlim authLock = new(1, 1);
    private Session? session;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, bool> knownContainers = new(StringComparer.Ordinal);
    private bool? segmentsExist;

    public SwiftObjectStore(SwiftStoreOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        this.options = options;
        if (!Uri.TryCreate(options.AuthUrl, UriKind.Absolute, out var auth) || auth.Scheme is not ("http" or "https"))
        {
            throw Invalid("SwiftAuthUrlInvalid", $"'{options.AuthUrl}' is not an http(s) URL; give the Swift auth URL (e.g. http://host:8080/auth/1.0 or https://keystone:5000/v3).");
        }

        if (string.IsNullOrEmpty(options.Container) || options.Container.Contains('/', StringComparison.Ordinal) || options.Container.Any(char.IsControl))
        {
            throw Invalid("SwiftContainerInvalid", $"'{options.Container}' is not a valid Swift container name (non-empty, no '/').");
        }

        if (options.SegmentSize < 1 || options.SegmentSize > options.MaxObjectSize)
        {
            throw Invalid("SwiftSegmentSizeInvalid", $"SegmentSize must be between 1 byte and MaxObjectSize ({options.MaxObjectSize}); it is {options.SegmentSize}.");
        }

        keystone = options.AuthVersion == SwiftAuthVersion.V3
            || (options.AuthVersion == SwiftAuthVersion.Auto && auth.AbsolutePath.TrimEnd('/').EndsWith("/v3", StringComparison.OrdinalIgnoreCase));
        if (keystone && string.IsNullOrEmpty(options.ProjectName))
        {
            throw Invalid("SwiftProjectMissing", "Keystone v3 authentication needs the project (ProjectName) the token is scoped to.");
        }

        var description = $"Swift container '{options.Container}'";
        prefix = NormalizePrefix(options.Prefix, description);
        Properties = new(Connections: Math.Max(1, options.Connections), HasAtomicCreateOnly: false,
            Description: $"{description}{(prefix.Length > 0 ? $" (prefix '{prefix}')" : "")} at {auth.GetLeftPart(UriPartial.Path)}");
        http = new HttpClient(new SocketsHttpHandler
        {
            MaxConnectionsPerServer = Math.Max(2, Properties.Connections * 2),
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            ConnectTimeout = options.ConnectTimeout,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
        })
        {
            Timeout = options.RequestTimeout,
        };
    }

    public ObjectStoreProperties Properties { get; }

    public async Task PutAsync(string name, Stream content, long length, PutOptions options, CancellationToken cancellationToken)
    {
        var key = KeyOf(name);
        ArgumentNullException.ThrowIfNull(content);
        ArgumentNullException.ThrowIfNull(options);
        var seekable = content.CanSeek;
        var start = seekable ? content.Position : 0;
        if (seekable)
        {
            ObjectStoreContent.CheckSeekableLength(content, start, length, name);
        }

        await EnsureContainerAsync(this.options.Container, cancellationToken).ConfigureAwait(false);
        if (options.CreateOnly && await StatAsync(name, cancellationToken).ConfigureAwait(false) is not null)
        {
            throw ObjectNames.Exists(name, Properties.Description);
        }

        if (length > this.options.MaxObjectSize)
        {
            await PutLargeAsync(name, key, content, start, length, seekable, cancellationToken).ConfigureAwait(false);
            return;
        }

        var md5 = options.ContentMd5 ?? (seekable ? await ObjectStoreContent.Md5OfSeekableAsync(content, start, length, name, cancellationToken).ConfigureAwait(false) : null);
        await PutOneAsync(name, this.options.Container, key, content, start, length, seekable, md5, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// One PUT of [start, start + length) of <paramref name="content"/> to container/key, the ETag
    /// sent (the MD5, when known) and the one returned compared; the MD5 is computed while sending
    /// when not given. Returns the MD5 of what was stored (hex). <c>contentEnds</c> is false for all
    /// but a large object's last segment: more content follows.
    /// </summary>
    private async Task<string> PutOneAsync(string name, string container, string key, Stream content, long start, long length, bool seekable, byte[]? md5, CancellationToken cancellationToken, bool contentEnds = true) =>
        await ExecuteAsync("PUT", name, write: true, canRetry: seekable, async token =>
        {
            for (var recreated = false; ; recreated = true)
            {
                ContentWindow? body = null;
                using var response = await SendAsync(s =>
                {
                    if (seekable)
                    {
                        content.Position = start;
                    }

                    body = new ContentWindow(content, length, name, hash: md5 is null, contentEnds);
                    var request = new HttpRequestMessage(HttpMethod.Put, ObjectUri(s, key, container)) { Content = new StreamContent(body) };
                    request.Content.Headers.ContentLength = length;
                    request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
                    if (md5 is not null)
                    {
                        request.Headers.TryAddWithoutValidation("ETag", ObjectStoreContent.Hex(md5));
                    }

                    return request;
                }, HttpCompletionOption.ResponseContentRead, canResend: seekable, token).ConfigureAwait(false);
                switch (response.StatusCode)
                {
                    case HttpStatusCode.Created or HttpStatusCode.OK or HttpStatusCode.NoContent:
                        var sent = md5 ?? body?.Md5;
                        var etag = ObjectStoreContent.NormalizeETag(Header(response, "ETag"));
                        if (sent is not null && etag is not null && etag != ObjectStoreContent.Hex(sent))
                        {
                            await TryDeleteAsync(key, container).ConfigureAwait(false);
                            throw ObjectStoreErrors.ChecksumMismatch(Properties.Description, name,
                                $"the service stored bytes with MD5 {etag} where {ObjectStoreContent.Hex(sent)} was sent (damaged in transit); the object was removed, run the command again.", write: true);
                        }

                        return sent is not null ? ObjectStoreContent.Hex(sent) : etag ?? "";
                    case HttpStatusCode.NotFound when !recreated && seekable:
                        knownContainers.TryRemove(container, out _); // removed meanwhile: create it again and resend
                        await EnsureContainerAsync(container, token).ConfigureAwait(false);
                        continue;
                    case HttpStatusCode.NotFound:
                        throw ObjectStoreErrors.ContainerNotFound(Properties.Description, name);
                    case HttpStatusCode.UnprocessableEntity:
                        throw ObjectStoreErrors.ChecksumMismatch(Properties.Description, name,
                            "the service received bytes whose MD5 differs from the ETag sent (the content changed while it was read, or was damaged in transit); nothing was stored.", write: true);
                    case HttpStatusCode.RequestEntityTooLarge:
                        throw ObjectStoreErrors.TooLarge(Properties.Description, name, length, this.options.MaxObjectSize);
                    default:
                        throw Refused(response, "PUT", name, write: true);
                }
            }
        }, cancellationToken).ConfigureAwait(false);

    private string SegmentContainer => options.Container + "_segments";

    /// <summary>
    /// A static large object: the segments (each checked by its ETag) under a name unique to this
    /// upload in the segments container, then the manifest, which Swift checks against them. A
    /// failure removes the segments already stored; nothing is visible under the name before the
    /// manifest is.
    /// </summary>
    private async Task PutLargeAsync(string name, string key, Stream content, long start, long length, bool seekable, CancellationToken cancellationToken)
    {
        await EnsureContainerAsync(SegmentContainer, cancellationToken).ConfigureAwait(false);
        segmentsExist = true;
        var upload = $"{key}/{DateTime.UtcNow:yyyyMMddHHmmssfff}-{Guid.NewGuid():N}"; // this upload's segments only
        var segments = new List<(string Key, string Etag, long Size)>();
        try
        {
            for (long offset = 0; offset < length; offset += options.SegmentSize)
            {
                var size = Math.Min(options.SegmentSize, length - offset);
                var segmentKey = $"{upload}/{segments.Count + 1:D8}";
                // Without a given MD5 the segment is digested while it is sent: read once.
                var etag = await PutOneAsync(name, SegmentContainer, segmentKey, content, start + offset, size, seekable, null, cancellationToken, contentEnds: offset + size == length).ConfigureAwait(false);
                segments.Add((segmentKey, etag, size));
            }

            var manifest = JsonSerializer.SerializeToUtf8Bytes(segments.Select(g => new Dictionary<string, object>
            {
                ["path"] = "/" + SegmentContainer + "/" + g.Key,
                ["etag"] = g.Etag,
                ["size_bytes"] = g.Size,
            }));
            await ExecuteAsync("PUT", name, write: true, canRetry: true, async token =>
            {
                using var response = await SendAsync(s => new HttpRequestMessage(HttpMethod.Put, new Uri(ObjectUri(s, key) + "?multipart-manifest=put"))
                {
                    Content = new ByteArrayContent(manifest),
                }, HttpCompletionOption.ResponseContentRead, canResend: true, token).ConfigureAwait(false);
                return response.StatusCode is HttpStatusCode.Created or HttpStatusCode.OK ? true : throw Refused(response, "PUT of the large-object manifest", name, write: true);
            }, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            foreach (var segment in segments)
            {
                await TryDeleteAsync(segment.Key, SegmentContainer).ConfigureAwait(false);
            }

            throw;
        }
    }

    public async Task<Stream> GetAsync(string name, long offset = 0, long? length = null, CancellationToken cancellationToken = default)
    {
        var key = KeyOf(name);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        if (length is < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(length));
        }

        if (length == 0)
        {
            return await StatAsync(name, cancellationToken).ConfigureAwait(false) is null
                ? throw await NotFoundAsync(name, cancellationToken).ConfigureAwait(false)
                : new MemoryStream([], writable: false);
        }

        var range = offset > 0 || length is not null ? $"bytes={offset}-{(length is { } n ? (offset + n - 1).ToString(System.Globalization.CultureInfo.InvariantCulture) : "")}" : null;
        return await ExecuteAsync<Stream>("GET", name, write: false, canRetry: true, async token =>
        {
            var response = await SendAsync(s =>
            {
                var request = new HttpRequestMessage(HttpMethod.Get, ObjectUri(s, key));
                if (range is not null)
                {
                    request.Headers.TryAddWithoutValidation("Range", range);
                }

                return request;
            }, HttpCompletionOption.ResponseHeadersRead, canResend: true, token).ConfigureAwait(false);
            var handed = false;
            try
            {
                switch (response.StatusCode)
                {
                    case HttpStatusCode.OK or HttpStatusCode.PartialContent:
                        var body = await response.Content.ReadAsStreamAsync(token).ConfigureAwait(false);
                        handed = true;
                        // A 200 to a ranged request means the server ignored the range: skip to it here.
                        return new ResponseBodyStream(body, response, response.StatusCode == HttpStatusCode.OK && range is not null ? offset : 0, length,
                            offset, (from, rest, ct) => GetAsync(name, from, rest, ct), Properties.Description, name);
                    case HttpStatusCode.RequestedRangeNotSatisfiable:
                        return new MemoryStream([], writable: false); // the object exists and ends before offset
                    case HttpStatusCode.NotFound:
                        throw await NotFoundAsync(name, token).ConfigureAwait(false);
                    default:
                        throw Refused(response, "GET", name, write: false);
                }
            }
            finally
            {
                if (!handed)
                {
                    response.Dispose();
                }
            }
        }, cancellationToken).ConfigureAwait(false);
    }

    public async Task<ObjectInfo?> StatAsync(string name, CancellationToken cancellationToken = default)
    {
        var key = KeyOf(name);
        return await ExecuteAsync("HEAD", name, write: false, canRetry: true, async token =>
        {
            using var response = await SendAsync(s => new HttpRequestMessage(HttpMethod.Head, ObjectUri(s, key)), HttpCompletionOption.ResponseHeadersRead, true, token).ConfigureAwait(false);
            return response.StatusCode switch
            {
                HttpStatusCode.OK or HttpStatusCode.NoContent => new ObjectInfo(name, response.Content.Headers.ContentLength ?? 0),
                HttpStatusCode.NotFound => null,
                _ => throw Refused(response, "HEAD", name, write: false),
            };
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Objects by prefix, paged by marker; a container that does not exist lists nothing (as an absent directory does).</summary>
    public async IAsyncEnumerable<ObjectInfo> ListAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        await foreach (var (key, size) in ListKeysAsync(options.Container, this.prefix + prefix, prefix, cancellationToken).ConfigureAwait(false))
        {
            yield return new ObjectInfo(key[this.prefix.Length..], size);
        }
    }

    /// <summary>The keys in <paramref name="container"/> that start with <paramref name="full"/> (the store's prefix included), in order.</summary>
    private async IAsyncEnumerable<(string Key, long Size)> ListKeysAsync(string container, string full, string prefix, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var marker = "";
        while (true)
        {
            var query = $"?format=json&limit={ListPageSize}&prefix={Uri.EscapeDataString(full)}" + (marker.Length > 0 ? $"&marker={Uri.EscapeDataString(marker)}" : "");
            var page = await ExecuteAsync("LIST", prefix.Length > 0 ? prefix + "*" : null, write: false, canRetry: true, async token =>
            {
                using var response = await SendAsync(s => new HttpRequestMessage(HttpMethod.Get, ContainerUri(s, query, container)), HttpCompletionOption.ResponseContentRead, true, token).ConfigureAwait(false);
                switch (response.StatusCode)
                {
                    case HttpStatusCode.NotFound or HttpStatusCode.NoContent:
                        return [];
                    case HttpStatusCode.OK:
                        var json = await response.Content.ReadAsByteArrayAsync(token).ConfigureAwait(false);
                        return ParseListing(json);
                    default:
                        throw Refused(response, "LIST", null, write: false);
                }
            }, cancellationToken).ConfigureAwait(false);
            if (page.Count == 0)
            {
                yield break;
            }

            foreach (var entry in page)
            {
                if (entry.Key.StartsWith(full, StringComparison.Ordinal))
                {
                    yield return entry;
                }
            }

            marker = page[^1].Key;
        }
    }

    /// <summary>A segment as <see cref="PutLargeAsync"/> names it: the object's key, the upload (time and id), the segment's number.</summary>
    [GeneratedRegex(@"^(?<key>.+)/\d{17}-[0-9a-f]{32}/\d{8}$", RegexOptions.CultureInvariant)]
    private static partial Regex SegmentKeyRegex();

    /// <summary>
    /// Deletes the segments of large objects under <paramref name="prefix"/> whose upload was
    /// killed before its manifest was stored (a manifest's own segments go with it in
    /// <see cref="DeleteAsync"/>; these nothing refers to, and no listing of the container shows).
    /// Only keys named as this store names segments, of objects <paramref name="isOwned"/> accepts.
    /// </summary>
    public async Task DeleteUnlistedAsync(string prefix, Func<string, bool> isOwned, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        await DeleteOwnSegmentsAsync(this.prefix + prefix, prefix,
            objectKey => objectKey.StartsWith(this.prefix, StringComparison.Ordinal) && isOwned(objectKey[this.prefix.Length..]), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Deletes the object, and for a static large object the segments <see cref="PutLargeAsync"/>
    /// wrote for this very key (<c>&lt;container&gt;_segments/&lt;key&gt;/&lt;upload&gt;/&lt;n&gt;</c>), found by
    /// their names. Never <c>?multipart-manifest=delete</c>: Swift then deletes whatever the manifest
    /// lists, in any container, and anyone who may write the container can plant a manifest listing
    /// other backups' objects among the names a removal or a lock cleanup deletes. Checking the
    /// manifest first would not do either: RGW answers <c>?multipart-manifest=get</c> with an empty
    /// body, and a manifest replaced between the check and the delete would still be followed. A
    /// plain DELETE removes only the manifest itself (Swift and RGW alike). Segments are looked for
    /// only where a segments container exists (an account that may not see it has none of ours).
    /// </summary>
    public async Task DeleteAsync(string name, CancellationToken cancellationToken = default)
    {
        var key = KeyOf(name);
        await ExecuteAsync("DELETE", name, write: true, canRetry: true, async token =>
        {
            using var response = await SendAsync(s => new HttpRequestMessage(HttpMethod.Delete, ObjectUri(s, key)), HttpCompletionOption.ResponseContentRead, true, token).ConfigureAwait(false);
            return response.StatusCode is HttpStatusCode.NoContent or HttpStatusCode.OK or HttpStatusCode.NotFound
                ? true
                : throw Refused(response, "DELETE", name, write: true);
        }, cancellationToken).ConfigureAwait(false);

        // After the manifest, so that no reader ever finds a manifest whose segments are gone.
        await DeleteOwnSegmentsAsync(key + "/", name, objectKey => objectKey == key, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Deletes the keys in the segments container under <paramref name="full"/> that are named as
    /// <see cref="PutLargeAsync"/> names segments, of an object key <paramref name="isOwned"/> accepts.
    /// </summary>
    private async Task DeleteOwnSegmentsAsync(string full, string prefix, Func<string, bool> isOwned, CancellationToken cancellationToken)
    {
        if (!await SegmentsExistAsync(cancellationToken).ConfigureAwait(false))
        {
            return;
        }

        var segments = new List<string>();
        await foreach (var (key, _) in ListKeysAsync(SegmentContainer, full, prefix, cancellationToken).ConfigureAwait(false))
        {
            if (SegmentKeyRegex().Match(key) is { Success: true } m && isOwned(m.Groups["key"].Value))
            {
                segments.Add(key);
            }
        }

        foreach (var key in segments)
        {
            await ExecuteAsync("DELETE", key, write: true, canRetry: true, async token =>
            {
                using var response = await SendAsync(s => new HttpRequestMessage(HttpMethod.Delete, ObjectUri(s, key, SegmentContainer)), HttpCompletionOption.ResponseContentRead, true, token).ConfigureAwait(false);
                return response.StatusCode is HttpStatusCode.NoContent or HttpStatusCode.OK or HttpStatusCode.NotFound
                    ? true
                    : throw Refused(response, "DELETE of a large-object segment", key, write: true);
            }, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task<bool> SegmentsExistAsync(CancellationToken cancellationToken)
    {
        if (segmentsExist is { } known)
        {
            return known;
        }

        var exists = await ExecuteAsync("HEAD of the segments container", null, write: false, canRetry: true, async token =>
        {
            using var head = await SendAsync(s => new HttpRequestMessage(HttpMethod.Head, ContainerUri(s, container: SegmentContainer)), HttpCompletionOption.ResponseHeadersRead, true, token).ConfigureAwait(false);
            // Not found or not ours to see (an account limited to the backup container gets 403):
            // either way this store never wrote segments there, so its objects are all plain ones.
            return head.IsSuccessStatusCode || (head.StatusCode is HttpStatusCode.NotFound or HttpStatusCode.Forbidden ? false : throw Refused(head, "HEAD of the segments container", null, write: false));
        }, cancellationToken).ConfigureAwait(false);
        segmentsExist = exists;
        return exists;
    }

    /// <summary>A PUT returns once the object is stored: nothing to flush.</summary>
    public Task FlushAsync(CancellationToken cancellationToken = default) => Task.CompletedTask;

    public void Dispose()
    {
        http.Dispose();
        authLock.Dispose();
    }

    private sealed record Session(string StorageUrl, string Token);

    /// <summary>A throttling or server-error answer, retried by the policy.</summary>
    private sealed class TransientStatusException(int status, string? reason) : Exception($"HTTP {status} {reason}")
    {
        public int Status { get; } = status;
        public string? Reason { get; } = reason;
    }

    private static BackupException Invalid(string id, string message) => new(BackupErrorKind.InvalidArgument, id, message);

    internal static string NormalizePrefix(string? prefix, string store)
    {
        var trimmed = prefix?.Trim('/') ?? "";
        return trimmed.Length == 0 ? "" : ObjectNames.Validate(trimmed, store) + "/";
    }

    private string KeyOf(string name) => prefix + ObjectNames.Validate(name, Properties.Description);

    private Uri ContainerUri(Session s, string? query = null, string? container = null) =>
        new(s.StorageUrl.TrimEnd('/') + "/" + Uri.EscapeDataString(container ?? options.Container) + query);

    private Uri ObjectUri(Session s, string key, string? container = null) =>
        new(s.StorageUrl.TrimEnd('/') + "/" + Uri.EscapeDataString(container ?? options.Container) + "/" + string.Join('/', key.Split('/').Select(Uri.EscapeDataString)));

    private static string? Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) || response.Content.Headers.TryGetValues(name, out values) ? values.FirstOrDefault() : null;

    private static List<(string Key, long Size)> ParseListing(byte[] json)
    {
        using var doc = JsonDocument.Parse(json);
        var list = new List<(string, long)>();
        foreach (var item in doc.RootElement.EnumerateArray())
        {
            if (item.TryGetProperty("name", out var n) && n.GetString() is { } key)
            {
                list.Add((key, item.TryGetProperty("bytes", out var b) ? b.GetInt64() : 0));
            }
        }

        return list;
    }

    /// <summary>An answer that is none of the expected ones, as the error the user can act on.</summary>
    private BackupException Refused(HttpResponseMessage response, string operation, string? name, bool write) =>
        response.StatusCode == HttpStatusCode.Forbidden
            ? ObjectStoreErrors.AccessDenied(Properties.Description, operation, name)
            : ObjectStoreErrors.RequestFailed(Properties.Description, operation, name, (int)response.StatusCode, response.ReasonPhrase, 1, write);

    /// <summary>ObjectNotFound, or ContainerNotFound when the container itself is missing.</summary>
    private async Task<BackupException> NotFoundAsync(string name, CancellationToken cancellationToken)
    {
        try
        {
            using var response = await SendAsync(s => new HttpRequestMessage(HttpMethod.Head, ContainerUri(s)), HttpCompletionOption.ResponseHeadersRead, true, cancellationToken).ConfigureAwait(false);
            if (response.StatusCode == HttpStatusCode.NotFound)
            {
                return ObjectStoreErrors.ContainerNotFound(Properties.Description, name);
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // The object is missing either way; the finer diagnosis is not worth another error.
        }

        return ObjectNames.NotFound(name, Properties.Description);
    }

    private async Task TryDeleteAsync(string key, string container)
    {
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            using var response = await SendAsync(s => new HttpRequestMessage(HttpMethod.Delete, ObjectUri(s, key, container)), HttpCompletionOption.ResponseContentRead, true, cts.Token).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // best effort: the caller gets the checksum error either way
        }
    }

    /// <summary>HEAD a container once per store; PUT it when missing (201 created, 202 already there).</summary>
    private async Task EnsureContainerAsync(string container, CancellationToken cancellationToken)
    {
        if (knownContainers.ContainsKey(container))
        {
            return;
        }

        await ExecuteAsync("creating the container for", null, write: true, canRetry: true, async token =>
        {
            using (var head = await SendAsync(s => new HttpRequestMessage(HttpMethod.Head, ContainerUri(s, container: container)), HttpCompletionOption.ResponseHeadersRead, true, token).ConfigureAwait(false))
            {
                if (head.IsSuccessStatusCode)
                {
                    return true;
                }

                if (head.StatusCode != HttpStatusCode.NotFound)
                {
                    throw Refused(head, "HEAD of the container", null, write: true);
                }
            }

            using var put = await SendAsync(s => new HttpRequestMessage(HttpMethod.Put, ContainerUri(s, container: container)) { Content = new ByteArrayContent([]) }, HttpCompletionOption.ResponseContentRead, true, token).ConfigureAwait(false);
            return put.IsSuccessStatusCode ? true : throw Refused(put, "creating the container", null, write: true);
        }, cancellationToken).ConfigureAwait(false);
        knownContainers[container] = true;
    }

    /// <summary>
    /// Sends a request built for the current session; a 401 renews the token once and sends again
    /// (when the content can be). Throttling and 5xx answers throw TransientStatusException for the
    /// retry policy; every other answer is returned for the caller to interpret.
    /// </summary>
    private async Task<HttpResponseMessage> SendAsync(Func<Session, HttpRequestMessage> build, HttpCompletionOption completion, bool canResend, CancellationToken cancellationToken)
    {
        var current = await SessionAsync(null, cancellationToken).ConfigureAwait(false);
        for (var renewed = false; ; renewed = true)
        {
            var request = build(current);
            request.Headers.TryAddWithoutValidation("X-Auth-Token", current.Token);
            var response = await http.SendAsync(request, completion, cancellationToken).ConfigureAwait(false);
            var status = (int)response.StatusCode;
            if (response.StatusCode == HttpStatusCode.Unauthorized)
            {
                response.Dispose();
                if (!renewed && canResend)
                {
                    current = await SessionAsync(current, cancellationToken).ConfigureAwait(false);
                    continue;
                }

                throw ObjectStoreErrors.AuthenticationFailed(Properties.Description,
                    renewed ? "a fresh token was refused; check the user's permissions on the account" : "the token expired during the upload; run the command again");
            }

            if (ObjectStoreRetryPolicy.IsTransientStatus(status))
            {
                var reason = response.ReasonPhrase;
                response.Dispose();
                throw new TransientStatusException(status, reason);
            }

            return response;
        }
    }

    /// <summary>The current session, or a new one when there is none or <paramref name="stale"/> was refused (one renewal for many concurrent 401s).</summary>
    private async Task<Session> SessionAsync(Session? stale, CancellationToken cancellationToken)
    {
        var current = Volatile.Read(ref session);
        if (current is not null && !ReferenceEquals(current, stale))
        {
            return current;
        }

        await authLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            current = session;
            if (current is not null && !ReferenceEquals(current, stale))
            {
                return current;
            }

            current = await ExecuteAsync("authentication", null, write: false, canRetry: true,
                token => keystone ? KeystoneAsync(token) : AuthV1Async(token), cancellationToken).ConfigureAwait(false);
            Volatile.Write(ref session, current);
            return current;
        }
        finally
        {
            authLock.Release();
        }
    }

    private async Task<Session> AuthV1Async(CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, options.AuthUrl);
        request.Headers.TryAddWithoutValidation("X-Auth-User", options.User);
        request.Headers.TryAddWithoutValidation("X-Auth-Key", options.Key);
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseContentRead, cancellationToken).ConfigureAwait(false);
        CheckAuthAnswer(response, "check the Swift user (account:user; for RGW uid:subuser, e.g. 'blockbackup:swift') and its key");
        var url = Header(response, "X-Storage-Url");
        var token = Header(response, "X-Auth-Token") ?? Header(response, "X-Storage-Token");
        if (string.IsNullOrEmpty(url) || string.IsNullOrEmpty(token))
        {
            throw ObjectStoreErrors.EndpointNotFound(Properties.Description, "the auth v1 answer carried no X-Storage-Url or X-Auth-Token; check that the auth URL is a Swift auth v1 endpoint.");
        }

        return new Session(url, token);
    }

    private async Task<Session> KeystoneAsync(CancellationToken cancellationToken)
    {
        var body = JsonSerializer.Serialize(new
        {
            auth = new
            {
                identity = new
                {
                    methods = new[] { "password" },
                    password = new { user = new { name = options.User, domain = new { name = options.UserDomain }, password = options.Key } },
                },
                scope = new { project = new { name = options.ProjectName, domain = new { name = options.ProjectDomain } } },
            },
        });
        using var request = new HttpRequestMessage(HttpMethod.Post, options.AuthUrl.TrimEnd('/') + "/auth/tokens")
        {
            Content = new StringContent(body, Encoding.UTF8, "application/json"),
        };
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseContentRead, cancellationToken).ConfigureAwait(false);
        CheckAuthAnswer(response, "check the Keystone user, password, user domain, project and project domain");
        var token = Header(response, "X-Subject-Token");
        if (string.IsNullOrEmpty(token))
        {
            throw ObjectStoreErrors.EndpointNotFound(Properties.Description, "Keystone answered without an X-Subject-Token; check that the auth URL is a Keystone v3 endpoint (…/v3).");
        }

        var json = await response.Content.ReadAsByteArrayAsync(cancellationToken).ConfigureAwait(false);
        return new Session(ObjectStoreEndpoint(json), token);
    }

    /// <summary>The object-store endpoint of the wanted interface (and region) in a Keystone v3 token's catalog.</summary>
    private string ObjectStoreEndpoint(byte[] json)
    {
        var found = new List<string>();
        try
        {
            using var doc = JsonDocument.Parse(json);
            if (doc.RootElement.TryGetProperty("token", out var token) && token.TryGetProperty("catalog", out var catalog))
            {
                foreach (var service in catalog.EnumerateArray())
                {
                    if (!(service.TryGetProperty("type", out var type) && type.GetString() == "object-store") || !service.TryGetProperty("endpoints", out var endpoints))
                    {
                        continue;
                    }

                    foreach (var endpoint in endpoints.EnumerateArray())
                    {
                        var iface = endpoint.TryGetProperty("interface", out var i) ? i.GetString() : null;
                        var region = endpoint.TryGetProperty("region", out var r) ? r.GetString() : null;
                        var regionId = endpoint.TryGetProperty("region_id", out var ri) ? ri.GetString() : null;
                        var url = endpoint.TryGetProperty("url", out var u) ? u.GetString() : null;
                        found.Add($"{iface}/{region ?? regionId}");
                        if (url is not null && string.Equals(iface, options.Interface, StringComparison.OrdinalIgnoreCase)
                            && (options.Region is null || options.Region == region || options.Region == regionId))
                        {
                            return url;
                        }
                    }
                }
            }
        }
        catch (JsonException ex)
        {
            throw ObjectStoreErrors.EndpointNotFound(Properties.Description, $"Keystone's token answer is not valid JSON ({ex.Message}).");
        }

        throw ObjectStoreErrors.EndpointNotFound(Properties.Description,
            $"the Keystone catalog has no object-store endpoint with interface '{options.Interface}'{(options.Region is null ? "" : $" in region '{options.Region}'")} "
            + $"(it has: {(found.Count == 0 ? "none" : string.Join(", ", found))}); check the region and interface, and that the project has Swift.");
    }

    private void CheckAuthAnswer(HttpResponseMessage response, string hint)
    {
        var status = (int)response.StatusCode;
        if (response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
        {
            throw ObjectStoreErrors.AuthenticationFailed(Properties.Description, hint + ".");
        }

        if (ObjectStoreRetryPolicy.IsTransientStatus(status))
        {
            throw new TransientStatusException(status, response.ReasonPhrase);
        }

        if (!response.IsSuccessStatusCode)
        {
            throw ObjectStoreErrors.RequestFailed(Properties.Description, "authentication", null, status, response.ReasonPhrase, 1, write: false);
        }
    }

    /// <summary>
    /// One operation under the retry policy, its last failure turned into the error the user can
    /// act on (unreachable, throttled or failing service); errors of ours pass through as they are.
    /// </summary>
    private async Task<T> ExecuteAsync<T>(string operation, string? name, bool write, bool canRetry, Func<CancellationToken, Task<T>> attempt, CancellationToken cancellationToken)
    {
        try
        {
            return await options.Retry.RunAsync((_, token) => attempt(token),
                ex => canRetry && (ex is TransientStatusException || ObjectStoreRetryPolicy.IsNetworkError(ex, cancellationToken)), cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not BackupException && !(ex is OperationCanceledException && cancellationToken.IsCancellationRequested))
        {
            if (ObjectStoreRetryPolicy.FindBackupException(ex) is { } ours)
            {
                ExceptionDispatchInfo.Capture(ours).Throw();
            }

            var attempts = canRetry ? Math.Max(1, options.Retry.MaxAttempts) : 1;
            if (ex is TransientStatusException status)
            {
                throw ObjectStoreErrors.RequestFailed(Properties.Description, operation, name, status.Status, status.Reason, attempts, write, ex);
            }

            if (ObjectStoreRetryPolicy.IsNetworkError(ex, cancellationToken))
            {
                throw ObjectStoreErrors.Unreachable(Properties.Description, operation, name, attempts, write, ex);
            }

            throw;
        }
    }
}
