using BlockBackup.Engine.Rbd;
using Xunit;

namespace BlockBackup.Engine.Tests;

/// <summary>A fact that needs the test Ceph cluster (tests/ceph/micro-cluster.sh; .ci/run starts it).</summary>
public sealed class CephFactAttribute : FactAttribute
{
    public CephFactAttribute()
    {
        if (Ceph.ConfPath is null)
        {
            Skip = "no Ceph cluster configured: start one with tests/ceph/micro-cluster.sh and set BLOCKBACKUP_CEPH_CONF to its ceph.conf";
        }
    }
}

/// <summary>A test that needs the Ceph cluster and the RADOS Gateway (an RBD source backed up into S3).</summary>
public sealed class CephAndS3FactAttribute : FactAttribute
{
    public CephAndS3FactAttribute()
    {
        Skip = Ceph.ConfPath is null
            ? "no Ceph cluster configured: start one with tests/ceph/micro-cluster.sh and set BLOCKBACKUP_CEPH_CONF to its ceph.conf"
            : ObjectStoreServers.S3SkipReason;
    }
}

/// <summary>Unique test images in the cluster's 'rbd' pool, removed with their snapshots afterwards.</summary>
public sealed class Ceph : IDisposable
{
    public static string? ConfPath { get; } =
        Environment.GetEnvironmentVariable("BLOCKBACKUP_CEPH_CONF") is { Length: > 0 } p && File.Exists(p) ? p : null;

    private readonly List<RbdImageRef> _created = new();

    public Ceph()
    {
        Client = new RbdClient(new RbdConnection(ConfPath)) { CommandTimeout = TimeSpan.FromSeconds(60) };
    }

    public RbdClient Client { get; }

    public RbdImageRef NewImage(string pool = "rbd", long? size = null)
    {
        var image = new RbdImageRef(pool, null, "bbt-" + Guid.NewGuid().ToString("N")[..10]);
        _created.Add(image);
        if (size is { } s)
        {
            Client.CreateImage(image, s);
        }

        return image;
    }

    public void Track(RbdImageRef image) => _created.Add(image);

    /// <summary>The image's bytes (at a snapshot) through `rbd export`.</summary>
    public byte[] Read(RbdImageRef image, string? snapshot = null)
    {
        var file = Path.Combine(Path.GetTempPath(), $"bbt-export-{Guid.NewGuid():N}");
        try
        {
            var (code, output) = Shell.Run("rbd", "--conf", ConfPath!, "export", "--no-progress", snapshot is null ? image.Spec : image.SnapSpec(snapshot), file);
            Assert.True(code == 0, output);
            return File.ReadAllBytes(file);
        }
        finally
        {
            File.Delete(file);
        }
    }

    /// <summary>Writes bytes at an offset through a diff stream (our writer, the real import-diff).</summary>
    public void Write(RbdImageRef image, long offset, byte[] data, long imageSize)
    {
        using var import = Client.Tool.StartImportDiff(image);
        var writer = new RbdDiffWriter(import.StandardInput.BaseStream);
        writer.WriteHeader(null, null, imageSize);
        writer.WriteData(offset, data);
        writer.WriteEnd();
        import.StandardInput.Close();
        RbdTool.Finish(import, "import-diff");
    }

    public void Dispose()
    {
        Client.Dispose();
        foreach (var image in _created.AsEnumerable().Reverse())
        {
            Shell.Run("rbd", "--conf", ConfPath!, "snap", "purge", "--no-progress", image.Spec);
            Shell.Run("rbd", "--conf", ConfPath!, "rm", "--no-progress", image.Spec);
        }
    }
}
