using System.Collections.Concurrent;
using System.Net;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using System.Security.Cryptography;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.ObjectStores;

namespace BlockBackup.ObjectStores.S3;

/// <summary>
/// An S3 bucket (AWS, Ceph RGW, MinIO...) as an object store, with AWSSDK.S3 4.x set up the way
/// RGW 16.2 needs it: path-style addressing, request/response checksums only when required (no
/// aws-chunked CRC trailers, which RGW rejects), SigV4 for the configured region.
/// <list type="bullet">
/// <item>Every PUT carries Content-MD5 of the bytes sent (RGW answers BadDigest otherwise);</item>
/// <item>create-only is If-None-Match: * on a single PUT, atomic (412 means the object exists);</item>
/// <item>objects over <see cref="S3StoreOptions.MultipartThreshold"/> (always over 5 GiB) go up in
/// parts, in parallel up to <see cref="S3StoreOptions.MaxParallelParts"/>, each with its own
/// Content-MD5; a failed upload is aborted. A create-only object over 5 GiB (or non-seekable
/// without a given MD5) is checked with a HEAD first: not atomic;</item>
/// <item>the bucket is created when a write finds it missing; reads of a missing bucket fail with
/// ObjectStoreContainerNotFound, a listing of one is empty.</item>
/// </list>
/// Requests are retried by <see cref="S3StoreOptions.Retry"/> (the SDK's own retries are off), a
/// PUT only when its content can be sent again. Created through <see cref="S3StoreLoader"/>, which
/// loads this assembly and the SDK into their own load context.
/// </summary>
public sealed class S3ObjectStore : IObjectStore, IDisposable
{
    private const long MaxSinglePut = 5L << 30;
    private const long MinPartSize = 5L << 20;
    private const int MaxParts = 10_000;
    private const long MaxPartBuffer = 1L << 30;
    private readonly S3StoreOptions options;
    private readonly AmazonS3Client client;
    private readonly string prefix;
    private volatile bool bucketKnown;

    public S3ObjectStore(S3StoreOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        this.options = options;
        if (!Uri.TryCreate(options.Endpoint, UriKind.Absolute, out var endpoint) || endpoint.Scheme is not ("http" or "https"))
        {
            throw Invalid("S3EndpointInvalid", $"'{options.Endpoint}' is not an http(s) URL; give the S3 endpoint (e.g. http://rgw.example:7480).");
        }

        if (string.IsNullOrEmpty(options.Bucket) || options.Bucket.Contains('/', StringComparison.Ordinal) || options.Bucket.Any(char.IsControl))
        {
            throw Invalid("S3BucketInvalid", $"'{options.Bucket}' is not a valid bucket name.");
        }

        if (options.PartSize < MinPartSize || options.PartSize > MaxPartBuffer || options.MaxParallelParts < 1 || options.MultipartThreshold < 0)
        {
            throw Invalid("S3MultipartSettingsInvalid", $"PartSize must be between 5 MiB and 1 GiB (is {options.PartSize}), MaxParallelParts at least 1 (is {options.MaxParallelParts}), MultipartThreshold not negative.");
        }

        var description = $"S3 bucket '{options.Bucket}'";
        prefix = NormalizePrefix(options.Prefix, description);
        Properties = new(Connections: Math.Max(1, options.Connections), HasAtomicCreateOnly: true,
            Description: $"{description}{(prefix.Length > 0 ? $" (prefix '{prefix}')" : "")} at {endpoint.GetLeftPart(UriPartial.Authority)}");
        var config = new AmazonS3Config
        {
            ServiceURL = options.Endpoint,
            ForcePathStyle = options.ForcePathStyle,
            AuthenticationRegion = options.Region,
            // RGW 16.2 rejects the SDK 4 defaults (an aws-chunked body with a CRC32 trailer).
            RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
            ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
            MaxErrorRetry = 0,               // our retry policy: bounded, jittered, content rewound
            ThrottleRetries = false,
            IgnoreConfiguredEndpointUrls = true, // AWS_ENDPOINT_URL* must not redirect a configured store
            Timeout = options.RequestTimeout,
            MaxConnectionsPerServer = Math.Max(2, Properties.Connections * 2),
        };
        client = new AmazonS3Client(new BasicAWSCredentials(options.AccessKey, options.SecretKey), config);
    }

    public ObjectStoreProperties Properties { get; }

    public async Task PutAsync(string name, Stream content, long length, PutOptions options, CancellationToken cancellationToken)
    {
        var key = KeyOf(name);
        ArgumentNullException.ThrowIfNull(content);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        if (!content.CanSeek && length <= this.options.PartSize)
        {
            // Small non-seekable content is buffered: it then has an MD5 and can be retried.
            var buffer = new byte[length];
            await ObjectStoreContent.ReadExactlyAsync(content, buffer, (int)length, name, length, 0, cancellationToken).ConfigureAwait(false);
            await ObjectStoreContent.CheckAtEndAsync(content, name, length, cancellationToken).ConfigureAwait(false);
            content = new MemoryStream(buffer, writable: false);
        }

        var seekable = content.CanSeek;
        var start = seekable ? content.Position : 0;
        if (seekable)
        {
            ObjectStoreContent.CheckSeekableLength(content, start, length, name);
        }

        var single = length <= MaxSinglePut && (seekable || options.ContentMd5 is not null)
            && (length <= this.options.MultipartThreshold || options.CreateOnly);
        if (!single)
        {
            await PutMultipartAsync(key, name, content, length, options, cancellationToken).ConfigureAwait(false);
            return;
        }

        var md5 = options.ContentMd5 ?? await ObjectStoreContent.Md5OfSeekableAsync(content, start, length, name, cancellationToken).ConfigureAwait(false);
        await EnsureBucketAsync(cancellationToken).ConfigureAwait(false);

        await ExecuteAsync("PUT", name, write: true, canRetry: seekable, async token =>
        {
            for (var created = false; ; created = true)
            {
                if (seekable)
                {
                    content.Position = start;
                }

                var request = new PutObjectRequest
                {
                    BucketName = this.options.Bucket,
                    Key = key,
                    InputStream = new ContentWindow(content, length, name, hash: false),
                    AutoCloseStream = false,
                    AutoResetStreamPosition = false,
                    MD5Digest = Convert.ToBase64String(md5),
                    IfNoneMatch = options.CreateOnly ? "*" : null,
                };
                request.Headers.ContentLength = length;
                try
                {
                    await client.PutObjectAsync(request, token).ConfigureAwait(false);
                    return true;
                }
                catch (AmazonS3Exception ex) when (ex.ErrorCode == "NoSuchBucket" && !created && seekable)
                {
                    bucketKnown = false; // removed meanwhile: create it again and resend
                    await CreateBucketAsync(token).ConfigureAwait(false);
                }
                catch (AmazonS3Exception ex) when (options.CreateOnly && (ex.StatusCode == HttpStatusCode.PreconditionFailed || ex.ErrorCode == "PreconditionFailed"))
                {
                    throw ObjectNames.Exists(name, Properties.Description);
                }
            }
        }, cancellationToken).ConfigureAwait(false);
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

        return await ExecuteAsync<Stream>("GET", name, write: false, canRetry: true, async token =>
        {
            // Always ranged, "bytes=0-" for a whole object: without a range the SDK checks the
            // ETag with its own managed MD5, a quarter of a restore's CPU time. The pipelines
            // verify what they read themselves (SHA-256 per block, the metadata's checksums).
            var request = new GetObjectRequest
            {
                BucketName = options.Bucket,
                Key = key,
                ByteRange = length is { } n ? new ByteRange(offset, offset + n - 1) : new ByteRange($"bytes={offset}-"),
            };

            GetObjectResponse response;
            try
            {
                response = await client.GetObjectAsync(request, token).ConfigureAwait(false);
            }
            catch (AmazonS3Exception ex) when (ex.ErrorCode == "NoSuchKey")
            {
                throw ObjectNames.NotFound(name, Properties.Description);
            }
            catch (AmazonS3Exception ex) when (ex.ErrorCode == "NoSuchBucket")
            {
                throw ObjectStoreErrors.ContainerNotFound(Properties.Description, name, ex);
            }
            catch (AmazonS3Exception ex) when (ex.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable || ex.ErrorCode == "InvalidRange")
            {
                return new MemoryStream([], writable: false); // the object exists and ends before offset
            }

            // A 200 to a ranged request means the server ignored the range: skip to it here.
            return new ResponseBodyStream(response.ResponseStream, response, response.HttpStatusCode == HttpStatusCode.OK ? offset : 0, length,
                offset, (from, rest, ct) => GetAsync(name, from, rest, ct), Properties.Description, name);
        }, cancellationToken).ConfigureAwait(false);
    }

    public async Task<ObjectInfo?> StatAsync(string name, CancellationToken cancellationToken = default)
    {
        var key = KeyOf(name);
        return await ExecuteAsync("HEAD", name, write: false, canRetry: true, async token =>
        {
            try
            {
                var response = await client.GetObjectMetadataAsync(new GetObjectMetadataRequest { BucketName = options.Bucket, Key = key }, token).ConfigureAwait(false);
                return new ObjectInfo(name, response.ContentLength);
            }
            catch (AmazonS3Exception ex) when (ex.StatusCode == HttpStatusCode.NotFound)
            {
                return null;
            }
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Objects by prefix (ListObjectsV2, paged); a bucket that does not exist lists nothing (as an absent directory does).</summary>
    public async IAsyncEnumerable<ObjectInfo> ListAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        string? continuation = null;
        do
        {
            var token = continuation;
            var page = await ExecuteAsync("LIST", prefix.Length > 0 ? prefix + "*" : null, write: false, canRetry: true, async t =>
            {
                try
                {
                    return await client.ListObjectsV2Async(new ListObjectsV2Request
                    {
                        BucketName = options.Bucket,
                        Prefix = this.prefix + prefix,
                        ContinuationToken = token,
                        MaxKeys = 1000,
                    }, t).ConfigureAwait(false);
                }
                catch (AmazonS3Exception ex) when (ex.ErrorCode == "NoSuchBucket")
                {
                    return null;
                }
            }, cancellationToken).ConfigureAwait(false);
            if (page is null)
            {
                yield break;
            }

            // SDK v4: collections are null when empty, IsTruncated is bool?.
            foreach (var item in page.S3Objects ?? [])
            {
                if (item.Key is { } k && k.StartsWith(this.prefix, StringComparison.Ordinal))
                {
                    yield return new ObjectInfo(k[this.prefix.Length..], item.Size ?? 0);
                }
            }

            continuation = page.IsTruncated == true && !string.IsNullOrEmpty(page.NextContinuationToken) ? page.NextContinuationToken : null;
        }
        while (continuation is not null);
    }

    public async Task DeleteAsync(string name, CancellationToken cancellationToken = default)
    {
        var key = KeyOf(name);
        await ExecuteAsync("DELETE", name, write: true, canRetry: true, async token =>
        {
            try
            {
                await client.DeleteObjectAsync(new DeleteObjectRequest { BucketName = options.Bucket, Key = key }, token).ConfigureAwait(false);
            }
            catch (AmazonS3Exception ex) when (ex.ErrorCode is "NoSuchBucket" or "NoSuchKey")
            {
                // nothing to delete
            }

            return true;
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Aborts the multipart uploads under <paramref name="prefix"/> that were never completed (a
    /// process killed mid-upload): their parts hold space in the bucket, and no object listing
    /// shows them. Only uploads of keys <paramref name="isOwned"/> accepts.
    /// </summary>
    public async Task DeleteUnlistedAsync(string prefix, Func<string, bool> isOwned, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        var full = this.prefix + prefix;
        var orphans = new List<(string Key, string UploadId)>();
        string? keyMarker = null, uploadMarker = null;
        do
        {
            var page = await ExecuteAsync("LIST of unfinished uploads", prefix + "*", write: false, canRetry: true, async token =>
            {
                try
                {
                    return await client.ListMultipartUploadsAsync(new ListMultipartUploadsRequest
                    {
                        BucketName = options.Bucket, Prefix = full, KeyMarker = keyMarker, UploadIdMarker = uploadMarker,
                    }, token).ConfigureAwait(false);
                }
                catch (AmazonS3Exception ex) when (ex.ErrorCode is "NoSuchBucket" or "AccessDenied" or "NotImplemented")
                {
                    // No bucket, or a credential (or service) that may not list uploads: this
                    // removal cannot see unfinished uploads, and must not fail for them.
                    return null;
                }
            }, cancellationToken).ConfigureAwait(false);
            if (page is null)
            {
                return;
            }

            foreach (var upload in page.MultipartUploads ?? [])
            {
                if (upload.Key.StartsWith(this.prefix, StringComparison.Ordinal) && isOwned(upload.Key[this.prefix.Length..]))
                {
                    orphans.Add((upload.Key, upload.UploadId));
                }
            }

            (keyMarker, uploadMarker) = page.IsTruncated == true ? (page.NextKeyMarker, page.NextUploadIdMarker) : (null, null);
        }
        while (keyMarker is not null);

        foreach (var (key, uploadId) in orphans)
        {
            await ExecuteAsync("aborting the multipart upload of", key, write: true, canRetry: true, async token =>
            {
                try
                {
                    await client.AbortMultipartUploadAsync(new AbortMultipartUploadRequest { BucketName = options.Bucket, Key = key, UploadId = uploadId }, token).ConfigureAwait(false);
                }
                catch (AmazonS3Exception ex) when (ex.ErrorCode is "NoSuchUpload")
                {
                    // completed or aborted meanwhile
                }

                return true;
            }, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>A PUT returns once the object is stored: nothing to flush.</summary>
    public Task FlushAsync(CancellationToken cancellationToken = default) => Task.CompletedTask;

    public void Dispose() => client.Dispose();

    private static BackupException Invalid(string id, string message) => new(BackupErrorKind.InvalidArgument, id, message);

    private static string NormalizePrefix(string? prefix, string store)
    {
        var trimmed = prefix?.Trim('/') ?? "";
        return trimmed.Length == 0 ? "" : ObjectNames.Validate(trimmed, store) + "/";
    }

    private string KeyOf(string name) => prefix + ObjectNames.Validate(name, Properties.Description);

    /// <summary>The part size for an upload: the configured one, grown (in whole MiB) so that 10,000 parts hold the object.</summary>
    internal static long PartSizeFor(long length, long configured)
    {
        var needed = (length + MaxParts - 1) / MaxParts;
        var size = Math.Max(configured, needed);
        return (size + (1 << 20) - 1) / (1 << 20) * (1 << 20);
    }

    private async Task PutMultipartAsync(string key, string name, Stream content, long length, PutOptions putOptions, CancellationToken cancellationToken)
    {
        if (putOptions.CreateOnly && await StatAsync(name, cancellationToken).ConfigureAwait(false) is not null)
        {
            throw ObjectNames.Exists(name, Properties.Description); // best effort: CompleteMultipartUpload ignores If-None-Match
        }

        var partSize = PartSizeFor(length, options.PartSize);
        if (partSize > MaxPartBuffer)
        {
            throw ObjectStoreErrors.TooLarge(Properties.Description, name, length, MaxPartBuffer * MaxParts);
        }

        var partCount = (int)((length + partSize - 1) / partSize);
        await EnsureBucketAsync(cancellationToken).ConfigureAwait(false);
        var uploadId = await ExecuteAsync("starting the multipart upload of", name, write: true, canRetry: true, async token =>
        {
            for (var created = false; ; created = true)
            {
                try
                {
                    return (await client.InitiateMultipartUploadAsync(new InitiateMultipartUploadRequest { BucketName = options.Bucket, Key = key }, token).ConfigureAwait(false)).UploadId;
                }
                catch (AmazonS3Exception ex) when (ex.ErrorCode == "NoSuchBucket" && !created)
                {
                    await CreateBucketAsync(token).ConfigureAwait(false);
                }
            }
        }, cancellationToken).ConfigureAwait(false);

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        using var slots = new SemaphoreSlim(options.MaxParallelParts);
        using var whole = IncrementalHash.CreateHash(HashAlgorithmName.MD5);
        var buffers = new ConcurrentBag<byte[]>();
        var etags = new PartETag[partCount];
        var uploads = new List<Task>();
        try
        {
            long done = 0;
            for (var part = 1; part <= partCount; part++)
            {
                var size = (int)Math.Min(partSize, length - done);
                await slots.WaitAsync(cts.Token).ConfigureAwait(false);
                var buffer = buffers.TryTake(out var free) ? free : new byte[partSize];
                try
                {
                    await ObjectStoreContent.ReadExactlyAsync(content, buffer, size, name, length, done, cts.Token).ConfigureAwait(false);
                }
                catch
                {
                    slots.Release();
                    throw;
                }

                whole.AppendData(buffer, 0, size);
                done += size;
                var number = part;
                uploads.Add(Task.Run(async () =>
                {
                    try
                    {
                        etags[number - 1] = await UploadPartAsync(key, name, uploadId, number, buffer, size, cts.Token).ConfigureAwait(false);
                    }
                    catch
                    {
                        cts.Cancel(); // stop reading and the other parts
                        throw;
                    }
                    finally
                    {
                        buffers.Add(buffer);
                        slots.Release();
                    }
                }, CancellationToken.None));
            }

            if (!content.CanSeek)
            {
                await ObjectStoreContent.CheckAtEndAsync(content, name, length, cts.Token).ConfigureAwait(false);
            }

            await Task.WhenAll(uploads).ConfigureAwait(false);
            var md5 = whole.GetHashAndReset();
            if (putOptions.ContentMd5 is { } given && !given.AsSpan().SequenceEqual(md5))
            {
                throw ObjectStoreErrors.ChecksumMismatch(Properties.Description, name,
                    $"the content read has MD5 {ObjectStoreContent.Hex(md5)} where {ObjectStoreContent.Hex(given)} was given; the multipart upload was aborted, nothing was stored.", write: true);
            }

            await CompleteAsync(key, name, uploadId, etags, length, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            cts.Cancel();
            try
            {
                await Task.WhenAll(uploads).ConfigureAwait(false);
            }
            catch (Exception)
            {
                // the first failure is the one reported
            }

            await AbortAsync(key, uploadId).ConfigureAwait(false);
            if (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested
                && uploads.FirstOrDefault(t => t.IsFaulted)?.Exception?.InnerException is { } partFailure)
            {
                ExceptionDispatchInfo.Capture(partFailure).Throw(); // a part failed and cancelled the reading
            }

            throw;
        }
    }

    private async Task<PartETag> UploadPartAsync(string key, string name, string uploadId, int number, byte[] buffer, int size, CancellationToken cancellationToken)
    {
        var md5 = Convert.ToBase64String(MD5.HashData(buffer.AsSpan(0, size)));
        return await ExecuteAsync($"PUT of part {number}", name, write: true, canRetry: true, async token =>
        {
            using var stream = new MemoryStream(buffer, 0, size, writable: false);
            var response = await client.UploadPartAsync(new UploadPartRequest
            {
                BucketName = options.Bucket,
                Key = key,
                UploadId = uploadId,
                PartNumber = number,
                PartSize = size,
                InputStream = stream,
                MD5Digest = md5,
            }, token).ConfigureAwait(false);
            return new PartETag(number, response.ETag);
        }, cancellationToken).ConfigureAwait(false);
    }

    private async Task CompleteAsync(string key, string name, string uploadId, PartETag[] etags, long length, CancellationToken cancellationToken)
    {
        await ExecuteAsync("completing the multipart upload of", name, write: true, canRetry: true, async token =>
        {
            try
            {
                await client.CompleteMultipartUploadAsync(new CompleteMultipartUploadRequest
                {
                    BucketName = options.Bucket,
                    Key = key,
                    UploadId = uploadId,
                    PartETags = [.. etags],
                }, token).ConfigureAwait(false);
            }
            catch (AmazonS3Exception ex) when (ex.ErrorCode == "NoSuchUpload")
            {
                // An earlier attempt completed it but its answer was lost: the object decides.
                if (await StatAsync(name, token).ConfigureAwait(false) is not { } done || done.Size != length)
                {
                    throw;
                }
            }

            return true;
        }, cancellationToken).ConfigureAwait(false);

        // RGW 16.2 answers CompleteMultipartUpload with an empty ETag: check the size instead.
        if (await StatAsync(name, cancellationToken).ConfigureAwait(false) is not { } stored || stored.Size != length)
        {
            throw ObjectStoreErrors.ChecksumMismatch(Properties.Description, name,
                "the completed multipart upload does not have the size sent; run the command again.", write: true);
        }
    }

    private async Task AbortAsync(string key, string uploadId)
    {
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            await ExecuteAsync("aborting the multipart upload of", key, write: true, canRetry: true, async token =>
            {
                await client.AbortMultipartUploadAsync(new AbortMultipartUploadRequest { BucketName = options.Bucket, Key = key, UploadId = uploadId }, token).ConfigureAwait(false);
                return true;
            }, cts.Token).ConfigureAwait(false);
        }
        catch (Exception)
        {
            // best effort: an unaborted upload only holds space until a lifecycle rule or an operator removes it
        }
    }

    /// <summary>
    /// Before the first write of this store, the bucket is checked (and created when missing), as
    /// Cinder's driver does: RGW answers a PUT into a missing bucket before reading its body, and
    /// the unread body then spoils the next request on that connection.
    /// </summary>
    private async Task EnsureBucketAsync(CancellationToken cancellationToken)
    {
        if (bucketKnown)
        {
            return;
        }

        var exists = await ExecuteAsync("checking the bucket for", null, write: true, canRetry: true, async token =>
        {
            try
            {
                await client.GetBucketLocationAsync(new GetBucketLocationRequest { BucketName = options.Bucket }, token).ConfigureAwait(false);
                return true;
            }
            catch (AmazonS3Exception ex) when (ex.ErrorCode == "NoSuchBucket" || ex.StatusCode == HttpStatusCode.NotFound)
            {
                return false;
            }
            catch (AmazonS3Exception ex) when (ex.ErrorCode == "AccessDenied")
            {
                return true; // a user limited to objects: the write itself tells
            }
        }, cancellationToken).ConfigureAwait(false);
        if (!exists)
        {
            await CreateBucketAsync(cancellationToken).ConfigureAwait(false);
        }

        bucketKnown = true;
    }

    private async Task CreateBucketAsync(CancellationToken cancellationToken)
    {
        await ExecuteAsync("creating the bucket for", null, write: true, canRetry: true, async token =>
        {
            for (var retried = false; ; retried = true)
            {
                try
                {
                    await client.PutBucketAsync(new PutBucketRequest { BucketName = options.Bucket }, token).ConfigureAwait(false);
                }
                catch (AmazonS3Exception ex) when (ex.ErrorCode is "BucketAlreadyOwnedByYou")
                {
                    // created meanwhile by another writer of ours
                }
                catch (AmazonS3Exception ex) when (!retried && ex.StatusCode == HttpStatusCode.BadRequest && ex.ErrorCode is null or "" or "BadRequest")
                {
                    continue; // a bare 400: the connection carried an unread body (see EnsureBucketAsync); a new one is used
                }

                return true;
            }
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>ObjectNotFound, or ContainerNotFound when the bucket itself is missing.</summary>
    private async Task<BackupException> NotFoundAsync(string name, CancellationToken cancellationToken)
    {
        try
        {
            await client.GetBucketLocationAsync(new GetBucketLocationRequest { BucketName = options.Bucket }, cancellationToken).ConfigureAwait(false);
        }
        catch (AmazonS3Exception ex) when (ex.ErrorCode == "NoSuchBucket" || ex.StatusCode == HttpStatusCode.NotFound)
        {
            return ObjectStoreErrors.ContainerNotFound(Properties.Description, name, ex);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            // the object is missing either way
        }

        return ObjectNames.NotFound(name, Properties.Description);
    }

    private static bool IsTransient(Exception ex, CancellationToken cancellationToken) => ex switch
    {
        AmazonServiceException service when service.StatusCode != 0 =>
            ObjectStoreRetryPolicy.IsTransientStatus((int)service.StatusCode) || service.ErrorCode is "SlowDown" or "RequestTimeout" or "InternalError" or "ServiceUnavailable" or "Throttling",
        _ => ObjectStoreRetryPolicy.IsNetworkError(ex, cancellationToken),
    };

    /// <summary>
    /// One operation under the retry policy, its last failure turned into the error the user can
    /// act on; errors of ours pass through as they are.
    /// </summary>
    private async Task<T> ExecuteAsync<T>(string operation, string? name, bool write, bool canRetry, Func<CancellationToken, Task<T>> attempt, CancellationToken cancellationToken)
    {
        try
        {
            return await options.Retry.RunAsync((_, token) => attempt(token), ex => canRetry && IsTransient(ex, cancellationToken), cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not BackupException && !(ex is OperationCanceledException && cancellationToken.IsCancellationRequested))
        {
            if (ObjectStoreRetryPolicy.FindBackupException(ex) is { } ours)
            {
                ExceptionDispatchInfo.Capture(ours).Throw();
            }

            var attempts = canRetry && IsTransient(ex, cancellationToken) ? Math.Max(1, options.Retry.MaxAttempts) : 1;
            if (ex is AmazonServiceException service && service.StatusCode != 0)
            {
                throw Map(service, operation, name, write, attempts);
            }

            if (ObjectStoreRetryPolicy.IsNetworkError(ex, cancellationToken))
            {
                throw ObjectStoreErrors.Unreachable(Properties.Description, operation, name, attempts, write, ex);
            }

            throw;
        }
    }

    private BackupException Map(AmazonServiceException ex, string operation, string? name, bool write, int attempts)
    {
        var status = (int)ex.StatusCode;
        return ex.ErrorCode switch
        {
            "InvalidAccessKeyId" or "SignatureDoesNotMatch" =>
                ObjectStoreErrors.AuthenticationFailed(Properties.Description, $"{ex.ErrorCode}: check the access key/secret.", ex),
            "AccessDenied" => ObjectStoreErrors.AccessDenied(Properties.Description, operation, name, ex),
            "BadDigest" or "InvalidDigest" => ObjectStoreErrors.ChecksumMismatch(Properties.Description, name ?? "",
                "the service received bytes whose MD5 differs from the Content-MD5 sent (the content changed while it was read, or was damaged in transit); nothing was stored.", write, ex),
            "EntityTooLarge" => ObjectStoreErrors.TooLarge(Properties.Description, name ?? "", -1, MaxSinglePut),
            "NoSuchBucket" => ObjectStoreErrors.ContainerNotFound(Properties.Description, name, ex),
            // A HEAD's 403 has no body to tell wrong credentials from missing permissions.
            _ when status == 403 => ObjectStoreErrors.AuthenticationFailed(Properties.Description,
                $"HTTP 403 to {operation}{(name is null ? "" : $" of '{name}'")}: check the access key/secret and the user's permissions on the bucket.", ex),
            _ => ObjectStoreErrors.RequestFailed(Properties.Description, operation, name, status, ex.ErrorCode, attempts, write, ex),
        };
    }
}
