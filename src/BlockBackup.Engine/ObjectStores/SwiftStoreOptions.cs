namespace BlockBackup.Engine.ObjectStores;

/// <summary>How <see cref="SwiftObjectStore"/> authenticates.</summary>
public enum SwiftAuthVersion
{
    /// <summary>Keystone v3 when the auth URL's path ends in /v3, auth v1 otherwise.</summary>
    Auto,

    /// <summary>GET the auth URL with X-Auth-User / X-Auth-Key (RGW's /auth/1.0, Swift's tempauth).</summary>
    V1,

    /// <summary>Keystone v3 password authentication (POST {auth}/auth/tokens), the object-store endpoint from the catalog.</summary>
    V3,
}

/// <summary>
/// Where and how a <see cref="SwiftObjectStore"/> stores objects. <paramref name="User"/> is
/// <c>account:user</c> for auth v1 (RGW: <c>uid:subuser</c>) or the Keystone user name;
/// <paramref name="Key"/> is the v1 key or the Keystone password (never shown in messages or by
/// <see cref="ToString"/>).
/// </summary>
public sealed record SwiftStoreOptions(string AuthUrl, string User, string Key, string Container)
{
    public SwiftAuthVersion AuthVersion { get; init; } = SwiftAuthVersion.Auto;

    /// <summary>Names are stored as <c>Prefix + "/" + name</c> in the container (a repository inside a shared container).</summary>
    public string? Prefix { get; init; }

    /// <summary>Keystone v3: the project (tenant) the token is scoped to; required there.</summary>
    public string? ProjectName { get; init; }

    public string UserDomain { get; init; } = "Default";

    public string ProjectDomain { get; init; } = "Default";

    /// <summary>Keystone v3: the catalog region to use (any when null, the first object-store endpoint).</summary>
    public string? Region { get; init; }

    /// <summary>Keystone v3: the endpoint interface (public, internal, admin).</summary>
    public string Interface { get; init; } = "public";

    /// <summary>How many requests the store serves at once (<see cref="ObjectStoreProperties.Connections"/>).</summary>
    public int Connections { get; init; } = 8;

    public ObjectStoreRetryPolicy Retry { get; init; } = ObjectStoreRetryPolicy.Default;

    /// <summary>One request's time limit, a whole PUT's upload included.</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromMinutes(15);

    /// <summary>Connection set-up's time limit.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// The largest object one PUT stores (Swift's and RGW's default, 5 GiB). Larger ones (the hash
    /// list of a volume over ~2 TiB) become a static large object: segments of
    /// <see cref="SegmentSize"/> in the container <c>&lt;container&gt;_segments</c> (python-swiftclient's
    /// convention) and a manifest under the object's own name, which every Swift client, Cinder
    /// included, reads as one object.
    /// </summary>
    public long MaxObjectSize { get; init; } = 5L << 30;

    /// <summary>The size of a static large object's segments (at most <see cref="MaxObjectSize"/>).</summary>
    public long SegmentSize { get; init; } = 1L << 30;

    public override string ToString() =>
        $"SwiftStoreOptions {{ AuthUrl = {AuthUrl}, User = {User}, Key = ***, Container = {Container}, Prefix = {Prefix}, AuthVersion = {AuthVersion}, ProjectName = {ProjectName}, Region = {Region} }}";
}
