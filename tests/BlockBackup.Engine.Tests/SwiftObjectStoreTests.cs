using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Format;
using BlockBackup.Engine.ObjectStores;
using BlockBackup.Engine.Operations;
using BlockBackup.Engine.Repository;
using Xunit;

namespace BlockBackup.Engine.Tests;

/// <summary>The object-store contract against the test RGW's Swift API (auth v1).</summary>
public sealed class SwiftObjectStoreContract : ObjectStoreContract, IClassFixture<SwiftContainers>
{
    private readonly SwiftObjectStore? store;

    public SwiftObjectStoreContract(SwiftContainers containers) => store = SkipReason is null ? containers.NewStore() : null;

    public static string? SkipReason => ObjectStoreServers.SwiftSkipReason;

    protected override IObjectStore Store => store!;

    public override void Dispose()
    {
        store?.Dispose();
        base.Dispose();
    }
}

public sealed class SwiftObjectStoreTests(SwiftContainers containers) : IClassFixture<SwiftContainers>
{
    private static readonly byte[] Hello = Encoding.UTF8.GetBytes("hello");

    private static async Task<byte[]> ReadAll(IObjectStore store, string name, long offset = 0, long? length = null)
    {
        await using var stream = await store.GetAsync(name, offset, length);
        var buffer = new MemoryStream();
        await stream.CopyToAsync(buffer);
        return buffer.ToArray();
    }

    private static bool IsObject(TestHttpServer.Request r, string name) => r.Path.EndsWith("/" + name, StringComparison.Ordinal);

    /// <summary>A proxy in front of the test RGW; the store authenticates through it, and its storage URL points back at it.</summary>
    private static (TestHttpServer Proxy, SwiftObjectStore Store) Proxied(string container, string prefix, Func<TestHttpServer.Request, TestHttpServer.Response?> handler, ObjectStoreRetryPolicy? retry = null)
    {
        var rgw = new Uri(ObjectStoreServers.SwiftAuthUrl!);
        var proxy = new TestHttpServer(new Uri(rgw.GetLeftPart(UriPartial.Authority)), handler);
        var options = SwiftContainers.Options(container, prefix, new Uri(proxy.Url, rgw.PathAndQuery).ToString());
        return (proxy, new SwiftObjectStore(retry is null ? options : options with { Retry = retry }));
    }

    [Fact]
    public void PropertiesSayCreateOnlyIsBestEffortAndOptionsHideTheKey()
    {
        using var store = new SwiftObjectStore(new SwiftStoreOptions("http://127.0.0.1:9/auth/1.0", "acct:user", "TOPSECRET", "volumebackups") { Prefix = "site-a" });
        Assert.False(store.Properties.HasAtomicCreateOnly);
        Assert.Equal(8, store.Properties.Connections);
        Assert.Equal("Swift container 'volumebackups' (prefix 'site-a/') at http://127.0.0.1:9/auth/1.0", store.Properties.Description);
        Assert.DoesNotContain("TOPSECRET", new SwiftStoreOptions("http://h/auth/1.0", "u", "TOPSECRET", "c").ToString(), StringComparison.Ordinal);
        Assert.Equal("SwiftProjectMissing", Assert.Throws<BackupException>(() => new SwiftObjectStore(new SwiftStoreOptions("http://h:5000/v3", "u", "p", "c"))).ErrorId);
    }

    [Fact]
    public async Task AnUnreachableAuthEndpointIsReportedAsSuch()
    {
        using var store = new SwiftObjectStore(new SwiftStoreOptions($"http://127.0.0.1:{S3ObjectStoreTests.FreePort()}/auth/1.0", "u", "k", "c") { Retry = ObjectStoreServers.FastRetry(3) });
        var ex = await Assert.ThrowsAsync<BackupException>(() => store.GetAsync("x"));
        Assert.Equal("ObjectStoreUnreachable", ex.ErrorId);
        Assert.Contains("3 attempts", ex.Message, StringComparison.Ordinal);
    }

    [SwiftFact]
    public async Task AWrongKeyIsReportedAsSuchWithoutTheKey()
    {
        using var store = new SwiftObjectStore(SwiftContainers.Options(containers.Container) with { Key = "WRONG-KEY-0123456789" });
        var ex = await Assert.ThrowsAsync<BackupException>(() => store.PutAsync("x", new MemoryStream(Hello), 5, PutOptions.Default, CancellationToken.None));
        Assert.Equal("ObjectStoreAuthenticationFailed", ex.ErrorId);
        Assert.Contains("check the Swift user", ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("WRONG-KEY-0123456789", ex.Message, StringComparison.Ordinal);
        Assert.Equal("ObjectStoreAuthenticationFailed", (await Assert.ThrowsAsync<BackupException>(() => store.GetAsync("x"))).ErrorId);
    }

    [SwiftFact]
    public async Task AMissingContainerIsReportedOnReadAndCreatedByAWrite()
    {
        var container = containers.Track(ObjectStoreServers.NewName("swm"));
        using var store = new SwiftObjectStore(SwiftContainers.Options(container));
        var ex = await Assert.ThrowsAsync<BackupException>(() => store.GetAsync("volume_1/_metadata"));
        Assert.Equal("ObjectStoreContainerNotFound", ex.ErrorId);
        Assert.Contains($"Swift container '{container}'", ex.Message, StringComparison.Ordinal);
        Assert.Null(await store.StatAsync("volume_1/_metadata"));
        Assert.Empty(await store.ListAsync("").ToListAsync());
        await store.DeleteAsync("volume_1/_metadata");

        await store.PutAsync("volume_1/_metadata", new MemoryStream(Hello), 5, new PutOptions(CreateOnly: true), CancellationToken.None);
        Assert.Equal(Hello, await ReadAll(store, "volume_1/_metadata"));
        Assert.Equal("ObjectNotFound", (await Assert.ThrowsAsync<BackupException>(() => store.GetAsync("volume_1/other"))).ErrorId);
    }

    [SwiftFact]
    public async Task AGivenMd5ThatDoesNotMatchIsRefusedByTheServerAndNothingIsStored()
    {
        using var store = containers.NewStore();
        var ex = await Assert.ThrowsAsync<BackupException>(() =>
            store.PutAsync("m/x", new MemoryStream(Hello), 5, new PutOptions(ContentMd5: MD5.HashData("other"u8)), CancellationToken.None));
        Assert.Equal("ObjectChecksumMismatch", ex.ErrorId);
        Assert.Null(await store.StatAsync("m/x"));
    }

    [SwiftFact]
    public async Task TheReturnedEtagIsComparedWithWhatWasSent()
    {
        var (proxy, store) = Proxied(containers.Container, "etag", r =>
            r.Method == "PUT" && IsObject(r, "x") ? new TestHttpServer.Response(201, "Created", new Dictionary<string, string> { ["ETag"] = new string('0', 32) }) : null);
        using (proxy)
        using (store)
        {
            // non-seekable content: no ETag header can be sent first, so the answer's etag is the only check
            var ex = await Assert.ThrowsAsync<BackupException>(() =>
                store.PutAsync("x", new NonSeekableStream(new MemoryStream(Hello)), 5, PutOptions.Default, CancellationToken.None));
            Assert.Equal("ObjectChecksumMismatch", ex.ErrorId);
            Assert.Contains(new string('0', 32), ex.Message, StringComparison.Ordinal);
            Assert.Equal("ObjectChecksumMismatch", (await Assert.ThrowsAsync<BackupException>(() =>
                store.PutAsync("x", new MemoryStream(Hello), 5, PutOptions.Default, CancellationToken.None))).ErrorId);
            Assert.Equal(2, proxy.Count("DELETE", t => t.EndsWith("/x", StringComparison.Ordinal))); // what was stored is removed
        }
    }

    [SwiftFact]
    public async Task NonSeekableContentIsStoredButNotRetried()
    {
        var failed = 0;
        var (proxy, store) = Proxied(containers.Container, "pipe", r =>
            r.Method == "PUT" && IsObject(r, "once") && Interlocked.Increment(ref failed) == 1 ? TestHttpServer.Response.SlowDown() : null);
        using (proxy)
        using (store)
        {
            var data = new byte[300_000];
            new Random(7).NextBytes(data);
            await store.PutAsync("fine", new NonSeekableStream(new MemoryStream(data)), data.Length, PutOptions.Default, CancellationToken.None);
            Assert.Equal(data, await ReadAll(store, "fine"));

            var ex = await Assert.ThrowsAsync<BackupException>(() => store.PutAsync("once", new NonSeekableStream(new MemoryStream(data)), data.Length, PutOptions.Default, CancellationToken.None));
            Assert.Equal("ObjectStoreRequestFailed", ex.ErrorId);
            Assert.Contains("1 attempt", ex.Message, StringComparison.Ordinal);
            Assert.Equal(1, proxy.Count("PUT", t => t.EndsWith("/once", StringComparison.Ordinal)));
            Assert.Equal("ObjectLengthMismatch", (await Assert.ThrowsAsync<BackupException>(() =>
                store.PutAsync("short", new NonSeekableStream(new MemoryStream(data)), data.Length + 1, PutOptions.Default, CancellationToken.None))).ErrorId);
            Assert.Null(await store.StatAsync("short"));
        }
    }

    [SwiftFact]
    public async Task ThrottlingAndServerErrorsAreRetriedWithTheContentRewound()
    {
        var puts = 0;
        var gets = 0;
        var (proxy, store) = Proxied(containers.Container, "retry", r =>
            r.Method == "PUT" && IsObject(r, "flaky") && Interlocked.Increment(ref puts) <= 2 ? TestHttpServer.Response.SlowDown()
            : r.Method == "GET" && IsObject(r, "flaky") && Interlocked.Increment(ref gets) <= 2 ? new TestHttpServer.Response(500, "Internal Server Error")
            : null);
        using (proxy)
        using (store)
        {
            var data = new byte[100_000];
            new Random(8).NextBytes(data);
            await store.PutAsync("flaky", new MemoryStream(data), data.Length, PutOptions.Default, CancellationToken.None);
            Assert.Equal(3, proxy.Count("PUT", t => t.EndsWith("/flaky", StringComparison.Ordinal)));
            Assert.Equal(data, await ReadAll(store, "flaky"));
            Assert.Equal(3, proxy.Count("GET", t => t.EndsWith("/flaky", StringComparison.Ordinal)));
        }

        var (down, throttled) = Proxied(containers.Container, "retry", r => r.Method == "PUT" && IsObject(r, "never") ? TestHttpServer.Response.SlowDown() : null, ObjectStoreServers.FastRetry(3));
        using (down)
        using (throttled)
        {
            var ex = await Assert.ThrowsAsync<BackupException>(() => throttled.PutAsync("never", new MemoryStream(Hello), 5, PutOptions.Default, CancellationToken.None));
            Assert.Equal("ObjectStoreRequestFailed", ex.ErrorId);
            Assert.Contains("HTTP 503", ex.Message, StringComparison.Ordinal);
            Assert.Contains("3 attempts", ex.Message, StringComparison.Ordinal);
            Assert.Contains("throttling", ex.Message, StringComparison.Ordinal);
            Assert.Equal(3, down.Count("PUT", t => t.EndsWith("/never", StringComparison.Ordinal)));
        }
    }

    /// <summary>A new container, and its segments container, both removed at the end.</summary>
    private string LargeObjectContainer(string name)
    {
        var container = containers.Track(ObjectStoreServers.NewName(name));
        containers.Track(container + "_segments");
        return container;
    }

    /// <summary>
    /// A store (key prefix p) that makes static large objects of anything over 1 MiB, in 400 KiB
    /// segments: small limits standing in for Swift's 5 GiB (a hash list of a volume over ~2 TiB).
    /// </summary>
    private static SwiftObjectStore LargeObjectStore(string container) =>
        new(SwiftContainers.Options(container, "p") with { MaxObjectSize = 1 << 20, SegmentSize = 400 << 10 });

    [SwiftFact]
    public async Task AnObjectLargerThanOnePutIsAStaticLargeObjectAndGoesWithItsSegments()
    {
        var container = LargeObjectContainer("slo");
        using var store = LargeObjectStore(container);
        using var segments = new SwiftObjectStore(SwiftContainers.Options(container + "_segments"));
        var data = new byte[(5 << 19) + 123]; // 2.5 MiB and a bit: seven segments, the last one short
        new Random(11).NextBytes(data);
        await store.PutAsync("volume_1/big_sha256file", new MemoryStream(data), data.Length, new PutOptions(CreateOnly: true), CancellationToken.None);
        await store.PutAsync("volume_1/small", new MemoryStream(Hello), 5, PutOptions.Default, CancellationToken.None);

        Assert.Equal(data, await ReadAll(store, "volume_1/big_sha256file"));
        Assert.Equal(data.AsSpan(400_000, 500_000).ToArray(), await ReadAll(store, "volume_1/big_sha256file", 400_000, 500_000)); // across segments
        Assert.Equal(data.Length, (await store.StatAsync("volume_1/big_sha256file"))!.Size);
        Assert.Equal(["volume_1/big_sha256file", "volume_1/small"], (await ListAll(store, "volume_1/")).Select(o => o.Name));
        Assert.Equal(7, (await ListAll(segments, "")).Count);
        var again = await Assert.ThrowsAsync<BackupException>(() => store.PutAsync("volume_1/big_sha256file", new MemoryStream(data), data.Length, new PutOptions(CreateOnly: true), CancellationToken.None));
        Assert.Equal("ObjectExists", again.ErrorId);

        // Not seekable (no retries possible), sent segment by segment all the same.
        await store.PutAsync("volume_1/streamed", new NonSeekableStream(new MemoryStream(data)), data.Length, PutOptions.Default, CancellationToken.None);
        Assert.Equal(data, await ReadAll(store, "volume_1/streamed"));

        await store.DeleteAsync("volume_1/big_sha256file");
        await store.DeleteAsync("volume_1/streamed");
        await store.DeleteAsync("volume_1/small");
        Assert.Null(await store.StatAsync("volume_1/big_sha256file"));
        Assert.Empty(await ListAll(store, ""));
        Assert.Empty(await ListAll(segments, "")); // the segments went with their manifests
    }

    [SwiftFact]
    public async Task SegmentsOfALargeHashListKilledBeforeItsManifestGoWithTheBackupsLeftover()
    {
        var container = LargeObjectContainer("slokill");
        using var store = LargeObjectStore(container);
        using var segments = new SwiftObjectStore(SwiftContainers.Options(container + "_segments"));
        var repository = new ObjectStoreRepository(store, RepositoryKind.Swift, container);
        var volumeId = Guid.NewGuid();
        NewBackup killed, other;
        using (var volumeLock = repository.AcquireLock(volumeId, "backup", CancellationToken.None))
        {
            killed = repository.BeginBackup(volumeLock, volumeId, Guid.NewGuid(), DateTime.UtcNow);
            other = repository.BeginBackup(volumeLock, volumeId, Guid.NewGuid(), DateTime.UtcNow);
        }

        // What a kill during the hash list's upload leaves: its first segments, and no manifest.
        // The other backup's large hash list is whole, and a key not named as segments are stays.
        await store.PutAsync(killed.Prefix + "-00001", new MemoryStream(Hello), 5, PutOptions.Default, CancellationToken.None);
        var upload = $"p/{killed.Prefix}_sha256file/{DateTime.UtcNow:yyyyMMddHHmmssfff}-{Guid.NewGuid():N}";
        foreach (var n in new[] { 1, 2 })
        {
            await segments.PutAsync($"{upload}/{n:D8}", new MemoryStream(Hello), 5, PutOptions.Default, CancellationToken.None);
        }

        await segments.PutAsync($"p/{killed.Prefix}_sha256file/not-a-segment", new MemoryStream(Hello), 5, PutOptions.Default, CancellationToken.None);
        var data = new byte[(3 << 19) + 7];
        new Random(12).NextBytes(data);
        await store.PutAsync(other.Prefix + "_sha256file", new MemoryStream(data), data.Length, PutOptions.Default, CancellationToken.None);
        var otherSegments = (await ListAll(segments, $"p/{other.Prefix}")).Select(o => o.Name).ToList();
        Assert.Equal(4, otherSegments.Count);

        var removed = repository.RemoveIncomplete(TimeSpan.Zero).Select(b => b.Id).ToList();
        Assert.Equal(new[] { killed.BackupId, other.BackupId }.Order(), removed.Order());
        Assert.Equal([$"p/{killed.Prefix}_sha256file/not-a-segment"], (await ListAll(segments, "")).Select(o => o.Name));
        Assert.Empty(await ListAll(store, "volume_"));
    }

    /// <summary>
    /// Manifests planted where BlockBackup deletes (among a backup's own names, and under a lock
    /// prefix, one named as a claim is) and listing objects of another backup and of another
    /// container: a listing, a backup of the volume (its lock) and removal delete the manifests
    /// at most, never what they list; our own large hash lists still go with their segments.
    /// </summary>
    [SwiftFact]
    public async Task APlantedLargeObjectManifestNeverTakesTheObjectsItListsWithIt()
    {
        var container = LargeObjectContainer("slohostile");
        var victimContainer = containers.Track(ObjectStoreServers.NewName("victim"));
        using var store = new SwiftObjectStore(SwiftContainers.Options(container, "p") with { MaxObjectSize = 64 << 10, SegmentSize = 24 << 10 });
        using var raw = new SwiftObjectStore(SwiftContainers.Options(container));
        using var segments = new SwiftObjectStore(SwiftContainers.Options(container + "_segments"));
        using var victims = new SwiftObjectStore(SwiftContainers.Options(victimContainer));
        var repository = new ObjectStoreRepository(store, RepositoryKind.Swift, container, "r/");
        using var scratch = new Scratch();

        // Volume A: 10 MiB, mostly zeros, in 4 KiB hash blocks: an 80 KiB hash list, a large
        // object in 24 KiB segments, beside data objects well under the 64 KiB limit.
        var volumeA = scratch.PathOf("a.img");
        using (var f = File.Create(volumeA))
        {
            f.SetLength(10 << 20);
            var rng = new Random(3);
            foreach (var at in new[] { 0L, 3 << 20, 7 << 20 })
            {
                var block = new byte[4096];
                rng.NextBytes(block);
                f.Position = at;
                f.Write(block);
            }
        }

        BackupResult Back(string volume, Guid volumeId, bool incremental = false) => BackupOperation.Run(repository, new BackupRequest
        {
            SourcePath = volume, VolumeId = volumeId, Incremental = incremental, ObjectSize = 1 << 20, HashBlockSize = 4096, UseSnapshot = false,
        });
        var idA = Guid.NewGuid();
        var a1 = Back(volumeA, idA).Backup;
        var volumeB = scratch.MixedVolume("b.img", 96 << 10, seed: 5);
        var b1 = BackupOperation.Run(repository, new BackupRequest { SourcePath = volumeB, ObjectSize = 32 << 10, HashBlockSize = 4096, UseSnapshot = false }).Backup;
        Assert.NotEmpty(await ListAll(segments, $"p/{a1.Prefix}_sha256file/")); // ours, large

        var precious = new Dictionary<string, byte[]> { ["precious.txt"] = Encoding.UTF8.GetBytes("precious"), ["precious2.txt"] = Encoding.UTF8.GetBytes("precious two") };
        foreach (var (name, bytes) in precious)
        {
            await victims.PutAsync(name, new MemoryStream(bytes), bytes.Length, PutOptions.Default, CancellationToken.None);
        }

        var bNames = (await ListAll(store, b1.Prefix)).Select(o => "p/" + o.Name).ToList();
        var before = new Dictionary<string, byte[]>();
        foreach (var name in bNames)
        {
            before[name] = await ReadAll(raw, name);
        }

        using var http = new HttpClient();
        var (url, token) = await SwiftContainers.AuthAsync(http);
        async Task PlantManifest(string key, IEnumerable<(string Container, string Key, byte[] Bytes)> listed)
        {
            var manifest = JsonSerializer.Serialize(listed.Select(l => new Dictionary<string, object>
            {
                ["path"] = $"/{l.Container}/{l.Key}",
                ["etag"] = Convert.ToHexString(MD5.HashData(l.Bytes)).ToLowerInvariant(),
                ["size_bytes"] = l.Bytes.Length,
            }));
            using var request = new HttpRequestMessage(HttpMethod.Put, $"{url.TrimEnd('/')}/{container}/{key}?multipart-manifest=put") { Content = new StringContent(manifest) };
            request.Headers.Add("X-Auth-Token", token);
            using var response = await http.SendAsync(request);
            Assert.True(response.IsSuccessStatusCode, $"planting {key}: {(int)response.StatusCode}");
        }

        var lockPrefix = $"p/r/.blockbackup/locks/volume-{idA:D}/";
        await PlantManifest($"p/{a1.Prefix}-00099", bNames.Select(n => (container, n, before[n])).Append((victimContainer, "precious.txt", precious["precious.txt"])));
        await PlantManifest($"{lockPrefix}0000000000000000001-{Guid.NewGuid():N}", [(victimContainer, "precious2.txt", precious["precious2.txt"])]);
        await PlantManifest($"{lockPrefix}not-a-claim", [(victimContainer, "precious2.txt", precious["precious2.txt"])]);
        // A stray object of volume A that no backup completed: the listing asks whether A is locked.
        var stray = ObjectNaming.ObjectStorePrefix("r/", idA, DateTime.UtcNow.AddMinutes(-1), "nova", Guid.NewGuid());
        await store.PutAsync(stray + "-00001", new MemoryStream(Hello), 5, PutOptions.Default, CancellationToken.None);

        async Task AssertVictimsIntact(string after)
        {
            foreach (var (name, bytes) in precious)
            {
                var now = await ReadAll(victims, name);
                Assert.True(bytes.SequenceEqual(now), $"{name} after {after}");
            }

            foreach (var name in bNames)
            {
                var now = await ReadAll(raw, name);
                Assert.True(before[name].SequenceEqual(now), $"{name} after {after}");
            }
        }

        Assert.Contains(repository.List(includeIncomplete: true), b => b.Status == BackupStatus.Incomplete);
        await AssertVictimsIntact("a listing with incomplete backups");
        var a2 = Back(volumeA, idA, incremental: true).Backup;
        await AssertVictimsIntact("a backup of the volume");
        Assert.Equal([a2.Id, a1.Id], repository.Remove(a1.Id, includeDependents: true).Select(b => b.Id));
        await AssertVictimsIntact("removal");

        Assert.Equal([b1.Id], repository.List().Select(b => b.Id));
        RestoreOperation.Run(repository, new RestoreRequest { BackupId = b1.Id, TargetPath = scratch.PathOf("b.out") });
        Assert.Equal(Scratch.Sha(volumeB), Scratch.Sha(scratch.PathOf("b.out")));
        Assert.Empty(await ListAll(segments, "")); // our large hash lists went with their segments
        Assert.Equal([$"{lockPrefix[2..]}not-a-claim"], (await ListAll(store, lockPrefix[2..])).Select(o => o.Name)); // not a claim: not ours to delete
    }

    [SwiftFact]
    public async Task DeletesWorkForAnAccountThatMayNotSeeTheSegmentsContainer()
    {
        // Operators often give the backup user one container only; Swift answers 403 for the
        // segments container, which only means no large objects of ours can be there.
        var (proxy, store) = Proxied(containers.Container, "acl", r =>
            r.Method == "HEAD" && r.Path.EndsWith(containers.Container + "_segments", StringComparison.Ordinal) ? new TestHttpServer.Response(403, "Forbidden") : null);
        using (proxy)
        using (store)
        {
            await store.PutAsync("x", new MemoryStream(Hello), 5, PutOptions.Default, CancellationToken.None);
            await store.DeleteAsync("x");
            Assert.Null(await store.StatAsync("x"));
            Assert.Equal(1, proxy.Count("HEAD", t => t.EndsWith("_segments", StringComparison.Ordinal)));
            Assert.Equal(1, proxy.Count("DELETE", t => t.EndsWith("/x", StringComparison.Ordinal) && !t.Contains("multipart-manifest", StringComparison.Ordinal)));
        }
    }

    private static async Task<List<ObjectInfo>> ListAll(IObjectStore store, string prefix)
    {
        var all = new List<ObjectInfo>();
        await foreach (var o in store.ListAsync(prefix))
        {
            all.Add(o);
        }

        return all;
    }

    [SwiftFact]
    public async Task ABodyThatBreaksOffIsResumedFromWhereItStopped()
    {
        var data = new byte[300_000];
        new Random(9).NextBytes(data);
        var gets = 0;
        // The first GET of "cut" sends a third of the body and resets; the next ones reach the RGW.
        var (proxy, store) = Proxied(containers.Container, "cut", r =>
            r.Method == "GET" && IsObject(r, "cut") && Interlocked.Increment(ref gets) == 1
                ? new TestHttpServer.Response(200, "OK", new Dictionary<string, string> { ["Content-Type"] = "application/octet-stream" }, data, CutAfter: 100_000)
                : null);
        using (proxy)
        using (store)
        {
            await store.PutAsync("cut", new MemoryStream(data), data.Length, PutOptions.Default, CancellationToken.None);
            Assert.Equal(data, await ReadAll(store, "cut"));
            Assert.Equal(2, proxy.Count("GET", t => t.EndsWith("/cut", StringComparison.Ordinal)));
        }

        // A body that always breaks off: a clear error after the resumption budget, not a raw IOException.
        var (broken, failing) = Proxied(containers.Container, "cut", r =>
            r.Method == "GET" && IsObject(r, "cut") ? new TestHttpServer.Response(200, "OK", new Dictionary<string, string>(), data, CutAfter: 1000) : null);
        using (broken)
        using (failing)
        {
            var ex = await Assert.ThrowsAsync<BackupException>(() => ReadAll(failing, "cut"));
            Assert.Equal("ObjectStoreReadBroken", ex.ErrorId);
            Assert.Contains("'cut'", ex.Message, StringComparison.Ordinal);
            Assert.Contains("resumed 3 times", ex.Message, StringComparison.Ordinal);
            Assert.Equal(4, broken.Count("GET", t => t.EndsWith("/cut", StringComparison.Ordinal)));
        }
    }

    [SwiftFact]
    public async Task ARefusedTokenIsRenewedOnceAndTheRequestSentAgain()
    {
        var refused = 0;
        var (proxy, store) = Proxied(containers.Container, "token", r =>
            r.Method is "PUT" or "GET" && IsObject(r, "x") && Interlocked.Increment(ref refused) is 1 or 3 ? new TestHttpServer.Response(401, "Unauthorized") : null);
        using (proxy)
        using (store)
        {
            await store.PutAsync("x", new MemoryStream(Hello), 5, PutOptions.Default, CancellationToken.None);
            Assert.Equal(Hello, await ReadAll(store, "x"));
            Assert.Equal(3, proxy.Count("GET", t => t.StartsWith("/auth/", StringComparison.Ordinal)));
            Assert.Equal(2, proxy.Count("PUT", t => t.EndsWith("/x", StringComparison.Ordinal)));
        }
    }

    [SwiftFact]
    public async Task KeystoneV3PasswordAuthFindsTheObjectStoreInTheCatalog()
    {
        using var http = new HttpClient();
        var (storageUrl, token) = await SwiftContainers.AuthAsync(http);
        string? body = null;
        var catalog = JsonSerializer.Serialize(new
        {
            token = new
            {
                catalog = new object[]
                {
                    new { type = "identity", endpoints = new[] { new { @interface = "public", region = "RegionOne", region_id = "RegionOne", url = "http://127.0.0.1:9/v3" } } },
                    new
                    {
                        type = "object-store",
                        endpoints = new[]
                        {
                            new { @interface = "internal", region = "RegionOne", region_id = "RegionOne", url = "http://127.0.0.1:9/internal" },
                            new { @interface = "public", region = "RegionTwo", region_id = "RegionTwo", url = "http://127.0.0.1:9/other-region" },
                            new { @interface = "public", region = "RegionOne", region_id = "RegionOne", url = storageUrl },
                        },
                    },
                },
            },
        });
        using var keystone = new TestHttpServer(null, r =>
        {
            if (r.Method != "POST" || r.Path != "/v3/auth/tokens")
            {
                return new TestHttpServer.Response(404, "Not Found");
            }

            body = Encoding.UTF8.GetString(r.Body);
            using var doc = JsonDocument.Parse(body);
            var password = doc.RootElement.GetProperty("auth").GetProperty("identity").GetProperty("password").GetProperty("user").GetProperty("password").GetString();
            return password == "s3cret"
                ? TestHttpServer.Response.Json(201, catalog, new Dictionary<string, string> { ["X-Subject-Token"] = token })
                : TestHttpServer.Response.Json(401, "{\"error\":{\"code\":401,\"title\":\"Unauthorized\"}}");
        });
        var options = new SwiftStoreOptions(new Uri(keystone.Url, "/v3").ToString(), "backup-user", "s3cret", containers.Container)
        {
            ProjectName = "backups",
            ProjectDomain = "prod",
            UserDomain = "users",
            Region = "RegionOne",
            Prefix = "keystone",
            Retry = ObjectStoreServers.FastRetry(),
        };
        using (var store = new SwiftObjectStore(options))
        {
            await store.PutAsync("x", new MemoryStream(Hello), 5, PutOptions.Default, CancellationToken.None);
            Assert.Equal(Hello, await ReadAll(store, "x"));
            Assert.Equal(["x"], (await store.ListAsync("").ToListAsync()).Select(o => o.Name));
        }

        using (var doc = JsonDocument.Parse(body!))
        {
            var auth = doc.RootElement.GetProperty("auth");
            Assert.Equal("password", auth.GetProperty("identity").GetProperty("methods")[0].GetString());
            var user = auth.GetProperty("identity").GetProperty("password").GetProperty("user");
            Assert.Equal("backup-user", user.GetProperty("name").GetString());
            Assert.Equal("users", user.GetProperty("domain").GetProperty("name").GetString());
            Assert.Equal("backups", auth.GetProperty("scope").GetProperty("project").GetProperty("name").GetString());
            Assert.Equal("prod", auth.GetProperty("scope").GetProperty("project").GetProperty("domain").GetProperty("name").GetString());
        }

        using (var wrong = new SwiftObjectStore(options with { Key = "not-it" }))
        {
            var ex = await Assert.ThrowsAsync<BackupException>(() => wrong.StatAsync("x"));
            Assert.Equal("ObjectStoreAuthenticationFailed", ex.ErrorId);
            Assert.Contains("Keystone", ex.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("not-it", ex.Message, StringComparison.Ordinal);
        }

        using (var elsewhere = new SwiftObjectStore(options with { Region = "RegionThree" }))
        {
            var ex = await Assert.ThrowsAsync<BackupException>(() => elsewhere.StatAsync("x"));
            Assert.Equal("ObjectStoreEndpointNotFound", ex.ErrorId);
            Assert.Contains("RegionThree", ex.Message, StringComparison.Ordinal);
        }
    }

    [SwiftFact]
    public async Task ACancelledCallStopsAtOnce()
    {
        using var store = containers.NewStore();
        using var cts = new CancellationTokenSource();
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => store.PutAsync("c", new MemoryStream(Hello), 5, PutOptions.Default, cts.Token));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => store.GetAsync("c", 0, null, cts.Token));
    }
}

public sealed class ObjectStoreRetryPolicyTests
{
    [Fact]
    public void BackoffGrowsExponentiallyWithJitterAndIsCapped()
    {
        var policy = new ObjectStoreRetryPolicy { BaseDelay = TimeSpan.FromMilliseconds(100), MaxDelay = TimeSpan.FromSeconds(1) };
        for (var i = 0; i < 50; i++)
        {
            Assert.InRange(policy.DelayBefore(1).TotalMilliseconds, 50, 100);
            Assert.InRange(policy.DelayBefore(3).TotalMilliseconds, 200, 400);
            Assert.InRange(policy.DelayBefore(30).TotalMilliseconds, 500, 1000);
        }

        Assert.True(Enumerable.Range(0, 50).Select(_ => policy.DelayBefore(2)).Distinct().Count() > 1); // jitter
    }

    [Fact]
    public async Task OnlyTransientFailuresAreRetriedAndOnlyUpToTheBudget()
    {
        var policy = ObjectStoreServers.FastRetry(4);
        var calls = 0;
        Assert.Equal(7, await policy.RunAsync((n, _) => ++calls < 3 ? throw new HttpRequestException("reset") : Task.FromResult(7), ex => ex is HttpRequestException, CancellationToken.None));
        Assert.Equal(3, calls);

        calls = 0;
        await Assert.ThrowsAsync<HttpRequestException>(() => policy.RunAsync<int>((_, _) => { calls++; throw new HttpRequestException("down"); }, _ => true, CancellationToken.None));
        Assert.Equal(4, calls);

        calls = 0;
        await Assert.ThrowsAsync<InvalidOperationException>(() => policy.RunAsync<int>((_, _) => { calls++; throw new InvalidOperationException(); }, ex => ex is HttpRequestException, CancellationToken.None));
        Assert.Equal(1, calls);

        using var cts = new CancellationTokenSource();
        calls = 0;
        await Assert.ThrowsAsync<HttpRequestException>(() => policy.RunAsync<int>((_, _) => { calls++; cts.Cancel(); throw new HttpRequestException("x"); }, _ => true, cts.Token));
        Assert.Equal(1, calls); // a cancelled caller is not retried for
    }

    [Fact]
    public void ThrottlingAndServerErrorsAreTransientClientErrorsAreNot()
    {
        Assert.All(new[] { 408, 429, 498, 500, 502, 503, 504 }, s => Assert.True(ObjectStoreRetryPolicy.IsTransientStatus(s)));
        Assert.All(new[] { 400, 401, 403, 404, 412, 416, 422 }, s => Assert.False(ObjectStoreRetryPolicy.IsTransientStatus(s)));
        Assert.True(ObjectStoreRetryPolicy.IsNetworkError(new HttpRequestException("x", new IOException("reset")), CancellationToken.None));
        Assert.True(ObjectStoreRetryPolicy.IsNetworkError(new TaskCanceledException("timeout"), CancellationToken.None));
        Assert.False(ObjectStoreRetryPolicy.IsNetworkError(new HttpRequestException("x", ObjectNames.ShortContent("n", 2, 1)), CancellationToken.None));
        Assert.False(ObjectStoreRetryPolicy.IsNetworkError(new InvalidOperationException(), CancellationToken.None));
    }
}
