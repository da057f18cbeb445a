using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Operations;
using Newtonsoft.Json.Linq;
using Xunit;

namespace BlockBackup.Engine.Tests;

/// <summary>
/// A hash list whose block size disagrees with the backup (issue 18, item 8): a clear error naming
/// the file and both sizes, or verification issues, never "Hash index 320+0 is outside the list".
/// </summary>
public sealed class HashListBlockSizeTests
{
    /// <summary>Halves the list's chunk_size; keeps the metadata's checksum of the list right (a writer who knows the format), or drops BlockBackup's extra metadata (a Cinder-written backup).</summary>
    private static (Scratch S, BackupInfo Backup) Backup(bool cinder)
    {
        var s = new Scratch();
        var volume = s.MixedVolume("vol.img", 3 << 20, seed: 95);
        var backup = s.Backup(volume, objectSize: 512 << 10).Backup;
        var hashList = s.Repository.Sha256FilePath(backup);
        var before = File.ReadAllBytes(hashList);
        var after = Encoding.UTF8.GetBytes(Regex.Replace(Encoding.UTF8.GetString(before), @"""chunk_size"": \d+", "\"chunk_size\": 16384"));
        File.WriteAllBytes(hashList, after);
        var metadataPath = s.Repository.MetadataPath(backup);
        var metadata = File.ReadAllText(metadataPath);
        if (cinder)
        {
            var root = JObject.Parse(metadata);
            root.Remove("extra_metadata");
            metadata = root.ToString();
        }
        else
        {
            metadata = metadata.Replace(Hex(before), Hex(after), StringComparison.Ordinal);
        }

        File.WriteAllText(metadataPath, metadata);
        return (s, backup);
    }

    private static string Hex(byte[] bytes) => Convert.ToHexString(SHA256.HashData(bytes)).ToLowerInvariant();

    [Fact]
    public void VerifyAndRestoreNameTheHashListAndBothBlockSizes()
    {
        var (s, backup) = Backup(cinder: false);
        using var _ = s;
        var issue = Assert.Single(s.Repository.Verify(backup.Id, includeChain: true).Issues);
        Assert.Equal(VerificationProblem.HashListInvalid, issue.Problem);
        Assert.Contains(s.Repository.Sha256FilePath(backup), issue.Message, StringComparison.Ordinal);
        Assert.Contains("blocks of 16384 bytes, but the backup's metadata says 32768", issue.Message, StringComparison.Ordinal);

        var error = Assert.Throws<BackupException>(() => s.Restore(backup.Id, s.PathOf("out.img")));
        Assert.Equal("HashListBlockSizeMismatch", error.ErrorId);
        Assert.False(File.Exists(s.PathOf("out.img")));
    }

    [Fact]
    public void InACinderBackupWithoutABlockSizeTheObjectsBeyondTheListAreReported()
    {
        var (s, backup) = Backup(cinder: true);
        using var _ = s;
        var issues = s.Repository.Verify(backup.Id, includeChain: true).Issues;
        Assert.Contains(issues, i => i.Problem == VerificationProblem.BlockHashMismatch && i.Message.Contains("beyond the hash list", StringComparison.Ordinal));

        var error = Assert.Throws<BackupException>(() => s.Restore(backup.Id, s.PathOf("out.img")));
        Assert.False(string.IsNullOrEmpty(error.ErrorId));
        Assert.False(File.Exists(s.PathOf("out.img")));
    }
}
