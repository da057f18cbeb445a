using System.Net;
using System.Reflection;
using System.Text.Json;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using BlockBackup.Engine.ObjectStores;
using Xunit;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace BlockBackup.Engine.Tests;

/// <summary>
/// The object-storage services the S3 and Swift tests run against (tests/ceph/rgw-start.sh starts
/// a RADOS Gateway; .ci/run exports these variables from its output). Unset, those tests skip.
/// </summary>
public static class ObjectStoreServers
{
    public static string? S3Endpoint { get; } = Env("BLOCKBACKUP_S3_ENDPOINT");
    public static string? S3AccessKey { get; } = Env("BLOCKBACKUP_S3_ACCESS_KEY");
    public static string? S3SecretKey { get; } = Env("BLOCKBACKUP_S3_SECRET_KEY");
    public static string? SwiftAuthUrl { get; } = Env("BLOCKBACKUP_SWIFT_AUTH_URL");
    public static string? SwiftUser { get; } = Env("BLOCKBACKUP_SWIFT_USER");
    public static string? SwiftKey { get; } = Env("BLOCKBACKUP_SWIFT_KEY");

    public static string? S3SkipReason { get; } = S3Endpoint is null || S3AccessKey is null || S3SecretKey is null
        ? "no S3 service configured: start one with tests/ceph/rgw-start.sh and set BLOCKBACKUP_S3_ENDPOINT, BLOCKBACKUP_S3_ACCESS_KEY and BLOCKBACKUP_S3_SECRET_KEY from its RGW_ENDPOINT, S3_ACCESS_KEY and S3_SECRET_KEY"
        : null;

    public static string? SwiftSkipReason { get; } = SwiftAuthUrl is null || SwiftUser is null || SwiftKey is null
        ? "no Swift service configured: start one with tests/ceph/rgw-start.sh and set BLOCKBACKUP_SWIFT_AUTH_URL, BLOCKBACKUP_SWIFT_USER and BLOCKBACKUP_SWIFT_KEY from its SWIFT_AUTH_URL, SWIFT_USER and SWIFT_KEY"
        : null;

    /// <summary>Short waits, so retry tests take milliseconds.</summary>
    public static ObjectStoreRetryPolicy FastRetry(int attempts = 4) => new() { MaxAttempts = attempts, BaseDelay = TimeSpan.FromMilliseconds(10), MaxDelay = TimeSpan.FromMilliseconds(100) };

    public static string NewName(string kind) => $"bbt-{kind}-{Guid.NewGuid():N}"[..24];

    private static string? Env(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : null;
}

/// <summary>A fact that needs the test S3 service.</summary>
public sealed class S3FactAttribute : FactAttribute
{
    public S3FactAttribute()
    {
        if (ObjectStoreServers.S3SkipReason is { } reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>A fact that needs the test Swift service.</summary>
public sealed class SwiftFactAttribute : FactAttribute
{
    public SwiftFactAttribute()
    {
        if (ObjectStoreServers.SwiftSkipReason is { } reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>
/// A contract test (ObjectStoreContract): skipped, with the reason, in a derived class whose public
/// static <c>SkipReason</c> is not null (a store whose service is not configured). An attribute on
/// the base method cannot know the derived class; its discoverer can.
/// </summary>
[XunitTestCaseDiscoverer("BlockBackup.Engine.Tests.ContractFactDiscoverer", "BlockBackup.Engine.Tests")]
[AttributeUsage(AttributeTargets.Method)]
public sealed class ContractFactAttribute : FactAttribute;

/// <summary>The theory form of <see cref="ContractFactAttribute"/>.</summary>
[XunitTestCaseDiscoverer("BlockBackup.Engine.Tests.ContractTheoryDiscoverer", "BlockBackup.Engine.Tests")]
[AttributeUsage(AttributeTargets.Method)]
public sealed class ContractTheoryAttribute : TheoryAttribute;

public sealed class ContractFactDiscoverer(IMessageSink diagnosticMessageSink) : FactDiscoverer(diagnosticMessageSink)
{
    protected override IXunitTestCase CreateTestCase(ITestFrameworkDiscoveryOptions discoveryOptions, ITestMethod testMethod, IAttributeInfo factAttribute) =>
        new ContractTestCase(DiagnosticMessageSink, discoveryOptions.MethodDisplayOrDefault(), discoveryOptions.MethodDisplayOptionsOrDefault(), testMethod);
}

public sealed class ContractTheoryDiscoverer(IMessageSink diagnosticMessageSink) : TheoryDiscoverer(diagnosticMessageSink)
{
    protected override IEnumerable<IXunitTestCase> CreateTestCasesForDataRow(ITestFrameworkDiscoveryOptions discoveryOptions, ITestMethod testMethod, IAttributeInfo theoryAttribute, object[] dataRow) =>
        [new ContractTestCase(DiagnosticMessageSink, discoveryOptions.MethodDisplayOrDefault(), discoveryOptions.MethodDisplayOptionsOrDefault(), testMethod, dataRow)];
}

public sealed class ContractTestCase : XunitTestCase
{
    [Obsolete("Called by the de-serializer; should only be called by deriving classes for de-serialization purposes")]
    public ContractTestCase()
    {
    }

    public ContractTestCase(IMessageSink sink, TestMethodDisplay display, TestMethodDisplayOptions options, ITestMethod testMethod, object[]? arguments = null)
        : base(sink, display, options, testMethod, arguments)
    {
    }

    protected override string GetSkipReason(IAttributeInfo factAttribute) =>
        TestMethod.TestClass.Class.ToRuntimeType()
            .GetProperty("SkipReason", BindingFlags.Public | BindingFlags.Static | BindingFlags.FlattenHierarchy)?.GetValue(null) as string
        ?? base.GetSkipReason(factAttribute);
}

/// <summary>
/// One fresh S3 bucket per test class (every test in it uses its own key prefix), plus any other
/// bucket a test names through <see cref="Track"/>; all emptied (multipart uploads aborted) and
/// removed at the end, straight through the AWS SDK.
/// </summary>
public sealed class S3Buckets : IDisposable
{
    private readonly List<string> buckets = [];

    public S3Buckets() => Bucket = Track(ObjectStoreServers.NewName("s3"));

    public string Bucket { get; }

    public string Track(string bucket)
    {
        lock (buckets)
        {
            buckets.Add(bucket);
        }

        return bucket;
    }

    public static S3StoreOptions Options(string bucket, string? prefix = null) =>
        new(ObjectStoreServers.S3Endpoint!, bucket, ObjectStoreServers.S3AccessKey!, ObjectStoreServers.S3SecretKey!)
        {
            Prefix = prefix,
            Retry = ObjectStoreServers.FastRetry(),
        };

    /// <summary>A store in this class's bucket under a prefix of its own, through the loader (its own load context).</summary>
    public IObjectStore NewStore() => S3StoreLoader.Create(Options(Bucket, "t-" + Guid.NewGuid().ToString("N")[..8]));

    /// <summary>A plain SDK client for checks and cleanup, configured as the store is.</summary>
    public static AmazonS3Client RawClient() => new(new BasicAWSCredentials(ObjectStoreServers.S3AccessKey, ObjectStoreServers.S3SecretKey), new AmazonS3Config
    {
        ServiceURL = ObjectStoreServers.S3Endpoint,
        ForcePathStyle = true,
        AuthenticationRegion = "us-east-1",
        RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
        ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
    });

    public static async Task<int> PendingUploadsAsync(string bucket)
    {
        using var client = RawClient();
        var uploads = await client.ListMultipartUploadsAsync(new ListMultipartUploadsRequest { BucketName = bucket });
        return uploads.MultipartUploads?.Count ?? 0;
    }

    public void Dispose()
    {
        if (ObjectStoreServers.S3SkipReason is not null)
        {
            return;
        }

        using var client = RawClient();
        foreach (var bucket in buckets)
        {
            try
            {
                Empty(client, bucket).GetAwaiter().GetResult();
                client.DeleteBucketAsync(bucket).GetAwaiter().GetResult();
            }
            catch (AmazonS3Exception ex) when (ex.StatusCode == HttpStatusCode.NotFound)
            {
            }
        }
    }

    private static async Task Empty(AmazonS3Client client, string bucket)
    {
        var uploads = await client.ListMultipartUploadsAsync(new ListMultipartUploadsRequest { BucketName = bucket });
        foreach (var upload in uploads.MultipartUploads ?? [])
        {
            await client.AbortMultipartUploadAsync(bucket, upload.Key, upload.UploadId);
        }

        string? token = null;
        do
        {
            var page = await client.ListObjectsV2Async(new ListObjectsV2Request { BucketName = bucket, ContinuationToken = token });
            foreach (var item in page.S3Objects ?? [])
            {
                await client.DeleteObjectAsync(bucket, item.Key);
            }

            token = page.IsTruncated == true ? page.NextContinuationToken : null;
        }
        while (token is not null);
    }
}

/// <summary>One fresh Swift container per test class (each test under its own prefix), plus tracked ones; emptied and removed at the end.</summary>
public sealed class SwiftContainers : IDisposable
{
    private readonly List<string> containers = [];

    public SwiftContainers() => Container = Track(ObjectStoreServers.NewName("sw"));

    public string Container { get; }

    public string Track(string container)
    {
        lock (containers)
        {
            containers.Add(container);
        }

        return container;
    }

    public static SwiftStoreOptions Options(string container, string? prefix = null, string? authUrl = null) =>
        new(authUrl ?? ObjectStoreServers.SwiftAuthUrl!, ObjectStoreServers.SwiftUser!, ObjectStoreServers.SwiftKey!, container)
        {
            Prefix = prefix,
            Retry = ObjectStoreServers.FastRetry(),
        };

    public SwiftObjectStore NewStore() => new(Options(Container, "t-" + Guid.NewGuid().ToString("N")[..8]));

    /// <summary>An auth v1 token and storage URL, straight from the service.</summary>
    public static async Task<(string StorageUrl, string Token)> AuthAsync(HttpClient http)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, ObjectStoreServers.SwiftAuthUrl);
        request.Headers.Add("X-Auth-User", ObjectStoreServers.SwiftUser);
        request.Headers.Add("X-Auth-Key", ObjectStoreServers.SwiftKey);
        using var response = await http.SendAsync(request);
        response.EnsureSuccessStatusCode();
        return (response.Headers.GetValues("X-Storage-Url").First(), response.Headers.GetValues("X-Auth-Token").First());
    }

    public void Dispose()
    {
        if (ObjectStoreServers.SwiftSkipReason is not null)
        {
            return;
        }

        using var http = new HttpClient();
        var (url, token) = AuthAsync(http).GetAwaiter().GetResult();
        foreach (var container in containers)
        {
            var baseUrl = url.TrimEnd('/') + "/" + Uri.EscapeDataString(container);
            while (true)
            {
                using var list = Send(http, HttpMethod.Get, baseUrl + "?format=json", token);
                if (list.StatusCode != HttpStatusCode.OK)
                {
                    break;
                }

                using var doc = JsonDocument.Parse(list.Content.ReadAsStringAsync().GetAwaiter().GetResult());
                var names = doc.RootElement.EnumerateArray().Select(e => e.GetProperty("name").GetString()!).ToList();
                if (names.Count == 0)
                {
                    break;
                }

                foreach (var name in names)
                {
                    Send(http, HttpMethod.Delete, baseUrl + "/" + string.Join('/', name.Split('/').Select(Uri.EscapeDataString)), token).Dispose();
                }
            }

            Send(http, HttpMethod.Delete, baseUrl, token).Dispose();
        }
    }

    private static HttpResponseMessage Send(HttpClient http, HttpMethod method, string url, string token)
    {
        using var request = new HttpRequestMessage(method, url);
        request.Headers.Add("X-Auth-Token", token);
        return http.SendAsync(request).GetAwaiter().GetResult();
    }
}

/// <summary>Content that cannot seek (a pipe, a compressor's output): the stores cannot rewind it.</summary>
public sealed class NonSeekableStream(Stream inner, long? failAfter = null) : Stream
{
    private long read;

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override int Read(byte[] buffer, int offset, int count)
    {
        if (failAfter is { } limit && read >= limit)
        {
            throw new IOException("the content source failed (test)");
        }

        var n = inner.Read(buffer, offset, failAfter is { } l ? (int)Math.Min(count, Math.Max(1, l - read)) : count);
        read += n;
        return n;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        Task.FromResult(Read(buffer, offset, count));

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var array = new byte[buffer.Length];
        var n = Read(array, 0, array.Length);
        array.AsSpan(0, n).CopyTo(buffer.Span);
        return ValueTask.FromResult(n);
    }

    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
