namespace BlockBackup.Engine.ObjectStores;

/// <summary>
/// Where and how an S3 object store (created by <see cref="S3StoreLoader.Create(S3StoreOptions)"/>)
/// stores objects: <paramref name="Endpoint"/> is the service URL (e.g. http://rgw:7480),
/// <paramref name="Bucket"/> the bucket (created by the first write when missing). The secret key
/// is never shown in messages or by <see cref="ToString"/>.
/// </summary>
public sealed record S3StoreOptions(string Endpoint, string Bucket, string AccessKey, string SecretKey, string Region = "us-east-1")
{
    /// <summary>Names are stored as <c>Prefix + "/" + name</c> in the bucket (s3://bucket/prefix).</summary>
    public string? Prefix { get; init; }

    /// <summary>Path-style addressing (http://endpoint/bucket/key), what RGW and most S3 servers need.</summary>
    public bool ForcePathStyle { get; init; } = true;

    /// <summary>How many requests the store serves at once (<see cref="ObjectStoreProperties.Connections"/>).</summary>
    public int Connections { get; init; } = 8;

    /// <summary>
    /// Objects larger than this go up in parts (multipart upload); those up to it in one PUT. An
    /// object over 5 GiB (S3's single-PUT limit) always goes multipart; a create-only object up to
    /// 5 GiB is always one PUT (If-None-Match is atomic only there).
    /// </summary>
    public long MultipartThreshold { get; init; } = 1L << 30;

    /// <summary>A multipart upload's part size (at least 5 MiB; grown so that no upload needs more than 10,000 parts).</summary>
    public long PartSize { get; init; } = 32L << 20;

    /// <summary>Parts of one upload sent at once; each holds a part-sized buffer.</summary>
    public int MaxParallelParts { get; init; } = 4;

    public ObjectStoreRetryPolicy Retry { get; init; } = ObjectStoreRetryPolicy.Default;

    /// <summary>One request's time limit.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromMinutes(15);

    public override string ToString() =>
        $"S3StoreOptions {{ Endpoint = {Endpoint}, Bucket = {Bucket}, AccessKey = {AccessKey}, SecretKey = ***, Region = {Region}, Prefix = {Prefix} }}";
}
