using BlockBackup.Engine.Compression;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Format;
using Newtonsoft.Json.Linq;
using Xunit;

namespace BlockBackup.Engine.Tests;

/// <summary>
/// Damaged or hostile metadata is rejected with a clear error before anything is written. The
/// BlockBackup checksum (extra_metadata) is removed first, so each case reaches the check it is
/// about exactly as a Cinder-written backup would.
/// </summary>
public class HostileMetadataTests
{
    private sealed class Case : IDisposable
    {
        public Case()
        {
            S = new Scratch();
            // Data without zero runs: exactly one object per 1 MiB range, the last one short.
            var volume = S.PathOf("vol.img");
            var bytes = new byte[(3 << 20) + 5000];
            BlockBackup.Bench.VolumeGenerator.Fill('t', new Random(21), bytes);
            File.WriteAllBytes(volume, bytes);
            Backup = S.Backup(volume, objectSize: 1 << 20).Backup;
            MetadataPath = S.Repository.MetadataPath(Backup);
            Root = JObject.Parse(File.ReadAllText(MetadataPath));
            Root.Remove("extra_metadata");
        }

        public Scratch S { get; }
        public BackupInfo Backup { get; }
        public string MetadataPath { get; }
        public JObject Root { get; }
        public JObject Descriptor(int i) => (JObject)((JProperty)((JObject)((JArray)Root["objects"]!)[i]).First!).Value;

        public void Save() => File.WriteAllText(MetadataPath, Root.ToString());

        /// <summary>Restoring must fail with InvalidData mentioning <paramref name="expected"/> and leave no target behind.</summary>
        public BackupException RestoreFails(string expected)
        {
            var target = S.PathOf("out.img");
            var ex = Assert.Throws<BackupException>(() => RestoreDirect(target));
            Assert.Equal(BackupErrorKind.InvalidData, ex.Kind);
            Assert.Contains(expected, ex.Message, StringComparison.OrdinalIgnoreCase);
            return ex;
        }

        private void RestoreDirect(string target)
        {
            // Bypass the listing (which would report the backup as damaged) to reach the restore's own checks.
            var meta = MetadataSerializer.Read(MetadataPath, Backup.Prefix);
            BlockBackup.Engine.Operations.RestoreOperation.Run(S.Repository, new() { BackupId = Backup.Id, TargetPath = target });
        }

        public void Dispose() => S.Dispose();
    }

    [Theory]
    [InlineData("../../etc/passwd")]
    [InlineData("sub/dir")]
    [InlineData("..")]
    public void ObjectNamesOutsideTheContainerAreRejected(string name)
    {
        using var c = new Case();
        var objects = (JArray)c.Root["objects"]!;
        var first = (JObject)objects[0];
        var prop = (JProperty)first.First!;
        objects[0] = new JObject { [c.Backup.Prefix + "-00001/" + name] = prop.Value };
        c.Save();
        c.RestoreFails("unsafe");
        Assert.False(File.Exists(c.S.PathOf("out.img")));
        Assert.Equal(BackupStatus.Damaged, c.S.Repository.List(includeIncomplete: true).Single().Status);
        Assert.Equal("BackupDamaged", Assert.Throws<BackupException>(() => c.S.Repository.Get(c.Backup.Id)).ErrorId);
    }

    [Theory]
    [InlineData("-00002")]        // a numbered name, kept as a bit of a number set
    [InlineData("-00002.extra")]  // a name that is not numbered, kept whole
    public void AnObjectListedTwiceIsRejected(string suffix)
    {
        using var c = new Case();
        var objects = (JArray)c.Root["objects"]!;
        var name = c.Backup.Prefix + suffix;
        objects[1] = new JObject { [name] = c.Descriptor(1) };
        objects[2] = new JObject { [name] = c.Descriptor(2) };
        c.Save();
        var ex = Assert.Throws<BackupException>(() => MetadataSerializer.Read(c.MetadataPath, c.Backup.Prefix));
        Assert.Contains($"object '{name}' is listed twice", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void NegativeOffsetIsRejected()
    {
        using var c = new Case();
        c.Descriptor(0)["offset"] = -32768;
        c.Save();
        c.RestoreFails("negative offset");
    }

    [Fact]
    public void OverlappingObjectsAreRejected()
    {
        using var c = new Case();
        c.Descriptor(1)["offset"] = (1 << 20) - 32768;
        c.Save();
        c.RestoreFails("overlap");
    }

    [Fact]
    public void ObjectBeyondTheVolumeIsRejected()
    {
        using var c = new Case();
        c.Descriptor(3)["offset"] = 64L << 20;
        c.Save();
        var ex = Assert.Throws<BackupException>(() => BlockBackup.Engine.Operations.RestoreOperation.Run(c.S.Repository, new() { BackupId = c.Backup.Id, TargetPath = c.S.PathOf("out.img") }));
        Assert.Contains("beyond the volume size", ex.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(c.S.PathOf("out.img")));
    }

    [Fact]
    public void MisalignedOffsetIsRejected()
    {
        using var c = new Case();
        // Shift the short tail object off its hash-block boundary (no overlap, still inside the last block).
        c.Descriptor(3)["offset"] = (3 << 20) + 512;
        c.Save();
        var ex = Assert.Throws<BackupException>(() => BlockBackup.Engine.Operations.RestoreOperation.Run(c.S.Repository, new() { BackupId = c.Backup.Id, TargetPath = c.S.PathOf("out.img") }));
        Assert.Equal("InvalidObjectExtent", ex.ErrorId);
        Assert.Contains("not aligned", ex.Message, StringComparison.Ordinal);
        Assert.False(File.Exists(c.S.PathOf("out.img")));
    }

    [Fact]
    public void StatedLengthReachingBeyondTheVolumeIsRejected()
    {
        using var c = new Case();
        c.Descriptor(3)["length"] = 32768 * 2;
        c.Save();
        c.RestoreFails("beyond the volume size");
        Assert.False(File.Exists(c.S.PathOf("out.img")));
    }

    [Fact]
    public void TruncatedObjectDataIsRejected()
    {
        using var c = new Case();
        c.Root["extra_metadata"] = null;
        c.Root.Remove("extra_metadata");
        c.Save();
        var name = ((JProperty)((JObject)((JArray)c.Root["objects"]!)[0]).First!).Name;
        var path = Path.Combine(c.S.Repository.ContainerPath(c.Backup), name);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
        var ex = Assert.Throws<BackupException>(() => BlockBackup.Engine.Operations.RestoreOperation.Run(c.S.Repository, new() { BackupId = c.Backup.Id, TargetPath = c.S.PathOf("out.img") }));
        Assert.Equal("ObjectCorrupt", ex.ErrorId);
        Assert.Matches("truncated|corrupt", ex.Message);
        Assert.Contains(name, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void DecompressedOutputLargerThanStatedIsRejected()
    {
        using var c = new Case();
        // Object 0 really holds 1 MiB; state half of that.
        c.Descriptor(0)["length"] = 1 << 19;
        c.Save();
        var ex = Assert.Throws<BackupException>(() => BlockBackup.Engine.Operations.RestoreOperation.Run(c.S.Repository, new() { BackupId = c.Backup.Id, TargetPath = c.S.PathOf("out.img") }));
        Assert.Equal(BackupErrorKind.InvalidData, ex.Kind);
        Assert.Matches("more than|no object in the chain covers", ex.Message);
    }

    [Fact]
    public void TruncatedJsonIsRejectedWithTheFileName()
    {
        using var c = new Case();
        var text = File.ReadAllText(c.MetadataPath);
        File.WriteAllText(c.MetadataPath, text[..(text.Length / 2)]);
        var ex = Assert.Throws<BackupException>(() => MetadataSerializer.Read(c.MetadataPath, c.Backup.Prefix));
        Assert.Equal("InvalidBackupMetadata", ex.ErrorId);
        Assert.Contains(c.MetadataPath, ex.Message, StringComparison.Ordinal);
        Assert.Contains("truncated or malformed", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("version", "2.0.0", "version")]
    [InlineData("backup_id", "not-a-uuid", "backup_id")]
    [InlineData("objects", "{}", "objects")]
    public void WrongFieldsAreRejected(string key, string value, string expected)
    {
        using var c = new Case();
        c.Root[key] = value == "{}" ? new JObject() : value;
        c.Save();
        var ex = Assert.Throws<BackupException>(() => MetadataSerializer.Read(c.MetadataPath, c.Backup.Prefix));
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void UnknownCompressionAndBadMd5AreRejected()
    {
        using var c = new Case();
        c.Descriptor(0)["compression"] = "lzma";
        c.Save();
        Assert.Contains("unsupported compression", Assert.Throws<BackupException>(() => MetadataSerializer.Read(c.MetadataPath, c.Backup.Prefix)).Message, StringComparison.Ordinal);
        c.Descriptor(0)["compression"] = "gzip"; // Cinder's alias for zlib framing: accepted
        c.Descriptor(1)["md5"] = "xyz";
        c.Save();
        Assert.Contains("invalid md5", Assert.Throws<BackupException>(() => MetadataSerializer.Read(c.MetadataPath, c.Backup.Prefix)).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void EditedObjectListIsCaughtByTheBlockBackupChecksum()
    {
        using var s = new Scratch();
        var b = s.Backup(s.MixedVolume("vol.img", 2 << 20, 4), objectSize: 1 << 20).Backup;
        var path = s.Repository.MetadataPath(b);
        var root = JObject.Parse(File.ReadAllText(path));
        var descriptor = (JObject)((JProperty)((JObject)((JArray)root["objects"]!)[0]).First!).Value;
        descriptor["md5"] = new string('0', 32);
        File.WriteAllText(path, root.ToString());
        var ex = Assert.Throws<BackupException>(() => MetadataSerializer.Read(path, b.Prefix));
        Assert.Contains("objects_sha256", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CompressionAliasesParseAsCinderDoes()
    {
        Assert.True(CompressionNames.TryParse("GZIP", out var g) && g == CompressionAlgorithm.Zlib);
        Assert.True(CompressionNames.TryParse("bzip2", out var b) && b == CompressionAlgorithm.Bz2);
        Assert.True(CompressionNames.TryParse("off", out var n) && n == CompressionAlgorithm.None);
        Assert.False(CompressionNames.TryParse("lz4", out _));
    }
}
