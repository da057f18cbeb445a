using System.Runtime.Loader;
using System.Security.Cryptography;
using System.Text;
using BlockBackup.Engine.Errors;
using Amazon.S3.Model;
using BlockBackup.Engine.ObjectStores;
using BlockBackup.Engine.Repository;
using Xunit;

namespace BlockBackup.Engine.Tests;

/// <summary>The object-store contract against the test RGW's S3 API, through the loader (its own load context).</summary>
public sealed class S3ObjectStoreContract : ObjectStoreContract, IClassFixture<S3Buckets>
{
    private readonly IObjectStore? store;

    public S3ObjectStoreContract(S3Buckets buckets) => store = SkipReason is null ? buckets.NewStore() : null;

    public static string? SkipReason => ObjectStoreServers.S3SkipReason;

    protected override IObjectStore Store => store!;

    public override void Dispose()
    {
        (store as IDisposable)?.Dispose();
        base.Dispose();
    }
}

public sealed class S3ObjectStoreTests(S3Buckets buckets) : IClassFixture<S3Buckets>
{
    private static readonly byte[] Hello = Encoding.UTF8.GetBytes("hello");

    private static byte[] Random(int size, int seed)
    {
        var data = new byte[size];
        new Random(seed).NextBytes(data);
        return data;
    }

    private static async Task<byte[]> ReadAll(IObjectStore store, string name, long offset = 0, long? length = null)
    {
        await using var stream = await store.GetAsync(name, offset, length);
        var buffer = new MemoryStream();
        await stream.CopyToAsync(buffer);
        return buffer.ToArray();
    }

    private static IObjectStore Create(S3StoreOptions options) => S3StoreLoader.Create(options);

    [Fact]
    public void TheStoreAndTheAwsSdkLiveInTheirOwnLoadContextAndShareTheEngine()
    {
        // Creating a store sends nothing: this needs no service.
        var store = Create(new S3StoreOptions("http://127.0.0.1:9", "bucket", "AK", "SECRET"));
        var context = S3StoreLoader.ContextOf(store)!;
        Assert.NotSame(AssemblyLoadContext.Default, context);
        Assert.Contains(context.Assemblies, a => a.GetName().Name == "AWSSDK.Core");
        Assert.Contains(context.Assemblies, a => a.GetName().Name == "AWSSDK.S3");
        Assert.DoesNotContain(context.Assemblies, a => a.GetName().Name == "BlockBackup.Engine");
        Assert.Same(typeof(IObjectStore).Assembly, store.GetType().GetInterfaces().Single(i => i.Name == nameof(IObjectStore)).Assembly);
        // a second store reuses the same context, not another copy of the SDK
        Assert.Same(context, S3StoreLoader.ContextOf(Create(new S3StoreOptions("http://127.0.0.1:9", "other", "AK", "SECRET"))));
        Assert.True(store.Properties.HasAtomicCreateOnly);
        Assert.Equal(8, store.Properties.Connections);
        Assert.Equal("S3 bucket 'bucket' at http://127.0.0.1:9", store.Properties.Description);
    }

    [Fact]
    public void AMissingS3FolderIsAClearError()
    {
        var ex = Assert.Throws<BackupException>(() => S3StoreLoader.Create(new S3StoreOptions("http://127.0.0.1:9", "b", "AK", "SK"), Path.GetTempPath()));
        Assert.Equal("S3SupportMissing", ex.ErrorId);
    }

    [Fact]
    public void OptionsNeverShowTheSecret()
    {
        var text = new S3StoreOptions("http://h", "b", "AKID", "TOPSECRET").ToString();
        Assert.DoesNotContain("TOPSECRET", text, StringComparison.Ordinal);
        Assert.Contains("AKID", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AnUnreachableEndpointIsReportedAsSuchAfterBoundedRetries()
    {
        var port = FreePort();
        var store = Create(new S3StoreOptions($"http://127.0.0.1:{port}", "b", "AK", "SK") { Retry = ObjectStoreServers.FastRetry(3) });
        var ex = await Assert.ThrowsAsync<BackupException>(() => store.PutAsync("x", new MemoryStream(Hello), 5, PutOptions.Default, CancellationToken.None));
        Assert.Equal("ObjectStoreUnreachable", ex.ErrorId);
        Assert.Contains("3 attempts", ex.Message, StringComparison.Ordinal);
        Assert.Contains($"127.0.0.1:{port}", ex.Message, StringComparison.Ordinal);
        Assert.Equal("ObjectStoreUnreachable", (await Assert.ThrowsAsync<BackupException>(() => store.GetAsync("x"))).ErrorId);
    }

    [S3Fact]
    public async Task WrongCredentialsAreReportedAsSuchWithoutTheSecret()
    {
        foreach (var options in new[]
        {
            S3Buckets.Options(buckets.Bucket) with { SecretKey = "WRONG-SECRET-0123456789" },
            S3Buckets.Options(buckets.Bucket) with { AccessKey = "NOSUCHACCESSKEY00000" },
        })
        {
            var store = Create(options);
            var ex = await Assert.ThrowsAsync<BackupException>(() => store.PutAsync("x", new MemoryStream(Hello), 5, PutOptions.Default, CancellationToken.None));
            Assert.Equal("ObjectStoreAuthenticationFailed", ex.ErrorId);
            Assert.Contains("check the access key/secret", ex.Message, StringComparison.Ordinal);
            Assert.Contains(buckets.Bucket, ex.Message, StringComparison.Ordinal);
            Assert.DoesNotContain(options.SecretKey, ex.Message, StringComparison.Ordinal);
            Assert.Equal("ObjectStoreAuthenticationFailed", (await Assert.ThrowsAsync<BackupException>(() => store.GetAsync("x"))).ErrorId);
            Assert.Equal("ObjectStoreAuthenticationFailed", (await Assert.ThrowsAsync<BackupException>(async () => await store.ListAsync("").ToListAsync())).ErrorId);
            Assert.Equal("ObjectStoreAuthenticationFailed", (await Assert.ThrowsAsync<BackupException>(() => store.StatAsync("x"))).ErrorId);
        }
    }

    [S3Fact]
    public async Task AMissingBucketIsReportedOnReadAndCreatedByAWrite()
    {
        var bucket = buckets.Track(ObjectStoreServers.NewName("s3m"));
        var store = Create(S3Buckets.Options(bucket));
        var ex = await Assert.ThrowsAsync<BackupException>(() => store.GetAsync("volume_1/_metadata"));
        Assert.Equal("ObjectStoreContainerNotFound", ex.ErrorId);
        Assert.Contains($"S3 bucket '{bucket}'", ex.Message, StringComparison.Ordinal);
        Assert.Equal(BackupErrorKind.NotFound, ex.Kind);
        Assert.Null(await store.StatAsync("volume_1/_metadata"));
        Assert.Empty(await store.ListAsync("").ToListAsync());
        await store.DeleteAsync("volume_1/_metadata");

        await store.PutAsync("volume_1/_metadata", new MemoryStream(Hello), 5, new PutOptions(CreateOnly: true), CancellationToken.None);
        Assert.Equal(Hello, await ReadAll(store, "volume_1/_metadata"));
        Assert.Equal("ObjectNotFound", (await Assert.ThrowsAsync<BackupException>(() => store.GetAsync("volume_1/other"))).ErrorId);

        // removed while the store is in use: the next write creates it again
        using (var raw = S3Buckets.RawClient())
        {
            await raw.DeleteObjectAsync(bucket, "volume_1/_metadata");
            await raw.DeleteBucketAsync(bucket);
        }

        await store.PutAsync("volume_1/again", new MemoryStream(Hello), 5, PutOptions.Default, CancellationToken.None);
        Assert.Equal(Hello, await ReadAll(store, "volume_1/again"));
        Assert.Equal(["volume_1/again"], (await store.ListAsync("").ToListAsync()).Select(o => o.Name));
    }

    [S3Fact]
    public async Task AContentMd5ThatDoesNotMatchIsRefusedAndNothingIsStored()
    {
        var store = buckets.NewStore();
        var ex = await Assert.ThrowsAsync<BackupException>(() =>
            store.PutAsync("m/x", new MemoryStream(Hello), 5, new PutOptions(ContentMd5: MD5.HashData("other"u8)), CancellationToken.None));
        Assert.Equal("ObjectChecksumMismatch", ex.ErrorId);
        Assert.Null(await store.StatAsync("m/x"));
    }

    [S3Fact]
    public async Task APrefixKeepsStoresApart()
    {
        var a = Create(S3Buckets.Options(buckets.Bucket, "repo-a/"));
        var b = Create(S3Buckets.Options(buckets.Bucket, "repo-b"));
        await a.PutAsync("x", new MemoryStream(Hello), 5, PutOptions.Default, CancellationToken.None);
        Assert.Null(await b.StatAsync("x"));
        Assert.Equal(["x"], (await a.ListAsync("").ToListAsync()).Select(o => o.Name));
        Assert.Empty(await b.ListAsync("").ToListAsync());
        using var raw = S3Buckets.RawClient();
        Assert.Equal(5, (await raw.GetObjectMetadataAsync(buckets.Bucket, "repo-a/x")).ContentLength);
    }

    [S3Fact]
    public async Task NonSeekableContentIsStoredAndAShortOneIsNot()
    {
        var store = buckets.NewStore();
        var data = Random(100_000, 1);
        await store.PutAsync("n/x", new NonSeekableStream(new MemoryStream(data)), data.Length, PutOptions.Default, CancellationToken.None);
        Assert.Equal(data, await ReadAll(store, "n/x"));
        Assert.Equal("ObjectLengthMismatch", (await Assert.ThrowsAsync<BackupException>(() =>
            store.PutAsync("n/y", new NonSeekableStream(new MemoryStream(data)), data.Length + 1, PutOptions.Default, CancellationToken.None))).ErrorId);
        Assert.Equal("ObjectLengthMismatch", (await Assert.ThrowsAsync<BackupException>(() =>
            store.PutAsync("n/z", new NonSeekableStream(new MemoryStream(data)), data.Length - 1, PutOptions.Default, CancellationToken.None))).ErrorId);
        Assert.Null(await store.StatAsync("n/y"));
        Assert.Null(await store.StatAsync("n/z"));

        // larger than a part, with its MD5 given: streamed in one PUT (not retried), create-only atomic
        using var proxy = new TestHttpServer(new Uri(ObjectStoreServers.S3Endpoint!), _ => null);
        var streamed = Create(S3Buckets.Options(buckets.Bucket, "stream") with { Endpoint = proxy.Url.ToString(), PartSize = 5 << 20 });
        var large = Random((6 << 20) + 5, 9);
        await streamed.PutAsync("big", new NonSeekableStream(new MemoryStream(large)), large.Length, new PutOptions(CreateOnly: true, ContentMd5: MD5.HashData(large)), CancellationToken.None);
        Assert.Equal(large, await ReadAll(streamed, "big"));
        Assert.Equal("ObjectExists", (await Assert.ThrowsAsync<BackupException>(() =>
            streamed.PutAsync("big", new NonSeekableStream(new MemoryStream(large)), large.Length, new PutOptions(CreateOnly: true, ContentMd5: MD5.HashData(large)), CancellationToken.None))).ErrorId);
        Assert.Equal(2, proxy.Count("PUT", t => t.EndsWith("/big", StringComparison.Ordinal)));
        Assert.Equal(0, proxy.Count("POST"));
    }

    [S3Fact]
    public async Task LargeObjectsGoUpInPartsInParallelAndReadBackByRange()
    {
        using var proxy = new TestHttpServer(new Uri(ObjectStoreServers.S3Endpoint!), _ => null);
        var options = S3Buckets.Options(buckets.Bucket, "mp") with { Endpoint = proxy.Url.ToString() };
        var store = Create(options with { MultipartThreshold = 1 << 20, PartSize = 5 << 20, MaxParallelParts = 2 });
        var data = Random((12 << 20) + 123, 2);
        await store.PutAsync("big", new MemoryStream(data), data.Length, new PutOptions(ContentMd5: MD5.HashData(data)), CancellationToken.None);
        Assert.Equal(3, proxy.Count("PUT", t => t.Contains("partNumber=", StringComparison.Ordinal)));
        Assert.Equal(1, proxy.Count("POST", t => t.Contains("uploads", StringComparison.Ordinal) && !t.Contains("uploadId", StringComparison.Ordinal)));
        Assert.Equal(data.Length, (await store.StatAsync("big"))!.Size);
        Assert.Equal(data, await ReadAll(store, "big"));
        Assert.Equal(data.AsSpan((5 << 20) - 10, 20).ToArray(), await ReadAll(store, "big", (5 << 20) - 10, 20)); // across a part boundary

        // non-seekable content larger than a part goes multipart too, read part by part
        var piped = Random((11 << 20) + 7, 3);
        await store.PutAsync("piped", new NonSeekableStream(new MemoryStream(piped)), piped.Length, PutOptions.Default, CancellationToken.None);
        Assert.Equal(piped, await ReadAll(store, "piped"));
        Assert.Equal(0, await S3Buckets.PendingUploadsAsync(buckets.Bucket));

        // create-only under the threshold of 5 GiB stays a single, atomic PUT
        await store.PutAsync("meta", new MemoryStream(data), data.Length, new PutOptions(CreateOnly: true), CancellationToken.None);
        Assert.Equal("ObjectExists", (await Assert.ThrowsAsync<BackupException>(() =>
            store.PutAsync("meta", new MemoryStream(data), data.Length, new PutOptions(CreateOnly: true), CancellationToken.None))).ErrorId);
        Assert.Equal(3 + 3, proxy.Count("PUT", t => t.Contains("partNumber=", StringComparison.Ordinal)));
    }

    [S3Fact]
    public async Task AFailedMultipartUploadIsAbortedAndLeavesNothing()
    {
        var store = Create(S3Buckets.Options(buckets.Bucket, "mpfail") with { MultipartThreshold = 1 << 20, PartSize = 5 << 20 });
        var data = Random(12 << 20, 4);

        // the content source fails after two parts
        var ex = await Assert.ThrowsAsync<IOException>(() =>
            store.PutAsync("broken", new NonSeekableStream(new MemoryStream(data), failAfter: 11 << 20), data.Length, PutOptions.Default, CancellationToken.None));
        Assert.Contains("test", ex.Message, StringComparison.Ordinal);
        // the content is shorter than announced
        Assert.Equal("ObjectLengthMismatch", (await Assert.ThrowsAsync<BackupException>(() =>
            store.PutAsync("short", new NonSeekableStream(new MemoryStream(data)), data.Length + 1, PutOptions.Default, CancellationToken.None))).ErrorId);
        // the content is not what its given MD5 says
        Assert.Equal("ObjectChecksumMismatch", (await Assert.ThrowsAsync<BackupException>(() =>
            store.PutAsync("wrongmd5", new MemoryStream(data), data.Length, new PutOptions(ContentMd5: MD5.HashData(Hello)), CancellationToken.None))).ErrorId);
        // the caller cancels
        using var cts = new CancellationTokenSource();
        var slow = new NonSeekableStream(new MemoryStream(data), failAfter: null);
        var upload = store.PutAsync("cancelled", new CancelAfterStream(slow, 6 << 20, cts), data.Length, PutOptions.Default, cts.Token);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => upload);

        foreach (var name in new[] { "broken", "short", "wrongmd5", "cancelled" })
        {
            Assert.Null(await store.StatAsync(name));
        }

        Assert.Equal(0, await S3Buckets.PendingUploadsAsync(buckets.Bucket));
    }

    [S3Fact]
    public async Task UploadsOfAHashListKilledBeforeTheyCompletedAreAbortedWithTheBackupsLeftover()
    {
        var bucket = buckets.Track(ObjectStoreServers.NewName("mpkill"));
        var store = Create(S3Buckets.Options(bucket, "p"));
        var repository = new ObjectStoreRepository(store, RepositoryKind.S3, bucket);
        var volumeId = Guid.NewGuid();
        NewBackup killed;
        using (var volumeLock = repository.AcquireLock(volumeId, "backup", CancellationToken.None))
        {
            killed = repository.BeginBackup(volumeLock, volumeId, Guid.NewGuid(), DateTime.UtcNow);
        }

        // What a kill during the hash list's multipart upload leaves: an upload with a part, never
        // completed; and one of a key that is not the backup's, which stays.
        await store.PutAsync(killed.Prefix + "-00001", new MemoryStream(Hello), 5, PutOptions.Default, CancellationToken.None);
        using var client = S3Buckets.RawClient();
        foreach (var key in new[] { $"p/{killed.Prefix}_sha256file", $"p/{killed.Prefix}_sha256file.unrelated" })
        {
            var upload = await client.InitiateMultipartUploadAsync(new InitiateMultipartUploadRequest { BucketName = bucket, Key = key });
            await client.UploadPartAsync(new UploadPartRequest { BucketName = bucket, Key = key, UploadId = upload.UploadId, PartNumber = 1, InputStream = new MemoryStream(Random(6 << 20, 9)) });
        }

        Assert.Equal(2, await S3Buckets.PendingUploadsAsync(bucket));
        Assert.Equal([killed.BackupId], repository.RemoveIncomplete(TimeSpan.Zero).Select(b => b.Id));
        var left = await client.ListMultipartUploadsAsync(new ListMultipartUploadsRequest { BucketName = bucket });
        Assert.Equal([$"p/{killed.Prefix}_sha256file.unrelated"], left.MultipartUploads.Select(u => u.Key));
        Assert.Empty(await store.ListAsync("volume_").ToListAsync());
    }

    [S3Fact]
    public async Task ThrottlingAndServerErrorsAreRetriedWithTheContentRewound()
    {
        var failures = 0;
        using var proxy = new TestHttpServer(new Uri(ObjectStoreServers.S3Endpoint!), r =>
            r.Method is "PUT" or "GET" && r.Path.Contains("/flaky", StringComparison.Ordinal) && Interlocked.Increment(ref failures) % 3 != 0 ? TestHttpServer.Response.SlowDown() : null);
        var store = Create(S3Buckets.Options(buckets.Bucket, "retry") with { Endpoint = proxy.Url.ToString() });
        var data = Random(70_000, 5);
        await store.PutAsync("flaky", new MemoryStream(data), data.Length, PutOptions.Default, CancellationToken.None);
        Assert.Equal(3, proxy.Count("PUT", t => t.Contains("/flaky", StringComparison.Ordinal)));
        Assert.Equal(data, await ReadAll(store, "flaky"));
        Assert.Equal(3, proxy.Count("GET", t => t.Contains("/flaky", StringComparison.Ordinal)));

        // past the retry budget: a clear error naming the answer and the attempts
        using var down = new TestHttpServer(new Uri(ObjectStoreServers.S3Endpoint!), r => r.Method == "PUT" ? TestHttpServer.Response.SlowDown() : null);
        var throttled = Create(S3Buckets.Options(buckets.Bucket, "retry") with { Endpoint = down.Url.ToString(), Retry = ObjectStoreServers.FastRetry(3) });
        var ex = await Assert.ThrowsAsync<BackupException>(() => throttled.PutAsync("never", new MemoryStream(data), data.Length, PutOptions.Default, CancellationToken.None));
        Assert.Equal("ObjectStoreRequestFailed", ex.ErrorId);
        Assert.Contains("HTTP 503 SlowDown", ex.Message, StringComparison.Ordinal);
        Assert.Contains("3 attempts", ex.Message, StringComparison.Ordinal);
        Assert.Equal(3, down.Count("PUT"));
    }

    [S3Fact]
    public async Task AConnectionDroppedMidRequestIsRetried()
    {
        var dropped = 0;
        using var proxy = new TestHttpServer(new Uri(ObjectStoreServers.S3Endpoint!), r =>
            r.Method == "PUT" && Interlocked.Increment(ref dropped) == 1 ? new TestHttpServer.Response(0, Drop: true) : null);
        var store = Create(S3Buckets.Options(buckets.Bucket, "drop") with { Endpoint = proxy.Url.ToString() });
        await store.PutAsync("x", new MemoryStream(Hello), 5, PutOptions.Default, CancellationToken.None);
        Assert.Equal(2, proxy.Count("PUT"));
        Assert.Equal(Hello, await ReadAll(store, "x"));
    }

    [S3Fact]
    public async Task ABodyThatBreaksOffIsResumedFromWhereItStopped()
    {
        var data = Random(300_000, 9);
        var gets = 0;
        // The first GET sends a third of the body and resets; the next ones reach the RGW.
        using var proxy = new TestHttpServer(new Uri(ObjectStoreServers.S3Endpoint!), r =>
            r.Method == "GET" && r.Path.EndsWith("/cut/x", StringComparison.Ordinal) && Interlocked.Increment(ref gets) == 1
                ? new TestHttpServer.Response(200, "OK", new Dictionary<string, string> { ["Content-Type"] = "application/octet-stream" }, data, CutAfter: 100_000)
                : null);
        var store = Create(S3Buckets.Options(buckets.Bucket, "resume") with { Endpoint = proxy.Url.ToString() });
        await store.PutAsync("cut/x", new MemoryStream(data), data.Length, PutOptions.Default, CancellationToken.None);
        Assert.Equal(data, await ReadAll(store, "cut/x"));
        Assert.Equal(2, proxy.Count("GET", t => t.Contains("/cut/x", StringComparison.Ordinal)));

        // Always broken: a clear error after the resumption budget, not a raw IOException.
        using var broken = new TestHttpServer(new Uri(ObjectStoreServers.S3Endpoint!), r =>
            r.Method == "GET" && r.Path.EndsWith("/cut/x", StringComparison.Ordinal) ? new TestHttpServer.Response(200, "OK", new Dictionary<string, string>(), data, CutAfter: 1000) : null);
        var failing = Create(S3Buckets.Options(buckets.Bucket, "resume") with { Endpoint = broken.Url.ToString() });
        var ex = await Assert.ThrowsAsync<BackupException>(() => ReadAll(failing, "cut/x"));
        Assert.Equal("ObjectStoreReadBroken", ex.ErrorId);
        Assert.Contains("'cut/x'", ex.Message, StringComparison.Ordinal);
        Assert.Contains("resumed 3 times", ex.Message, StringComparison.Ordinal);
        Assert.Equal(4, broken.Count("GET", t => t.Contains("/cut/x", StringComparison.Ordinal)));
    }

    [S3Fact]
    public async Task ACancelledCallStopsAtOnce()
    {
        var store = buckets.NewStore();
        using var cts = new CancellationTokenSource();
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => store.PutAsync("c", new MemoryStream(Hello), 5, PutOptions.Default, cts.Token));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => store.GetAsync("c", 0, null, cts.Token));
        Assert.Null(await store.StatAsync("c"));
    }

    [S3Fact]
    public async Task ABackupWrittenThroughS3ReadsBackThroughSwift()
    {
        // RGW: S3 buckets and Swift containers are one namespace for one user (Cinder relies on it).
        if (ObjectStoreServers.SwiftSkipReason is not null)
        {
            return;
        }

        var s3 = Create(S3Buckets.Options(buckets.Bucket, "both"));
        await s3.PutAsync("volume_1/x-00001", new MemoryStream(Hello), 5, PutOptions.Default, CancellationToken.None);
        using var swift = new SwiftObjectStore(SwiftContainers.Options(buckets.Bucket, "both"));
        Assert.Equal(Hello, await ReadAll(swift, "volume_1/x-00001"));
        Assert.Equal(["volume_1/x-00001"], (await swift.ListAsync("volume_1/").ToListAsync()).Select(o => o.Name));
    }

    internal static int FreePort()
    {
        var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    /// <summary>Cancels a token once this many bytes were read (a user pressing Ctrl+C mid-upload).</summary>
    private sealed class CancelAfterStream(Stream inner, long after, CancellationTokenSource cts) : Stream
    {
        private long read;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count)
        {
            var n = inner.Read(buffer, offset, count);
            read += n;
            if (read >= after)
            {
                cts.Cancel();
            }

            return n;
        }

        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
