using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Format;
using BlockBackup.Engine.Operations;
using Xunit;

namespace BlockBackup.Engine.Tests;

public class CorruptionTests
{
    private static (Scratch S, BackupResult Backup, BackupMetadata Meta) Setup(string kind)
    {
        var s = new Scratch();
        var volume = s.PathOf("vol.img");
        var data = new byte[4 << 20];
        // Text in the first objects (zlib), random data in the last ones (stored "none").
        BlockBackup.Bench.VolumeGenerator.Fill('t', new Random(1), data.AsSpan(0, 2 << 20));
        new Random(2).NextBytes(data.AsSpan(2 << 20));
        File.WriteAllBytes(volume, data);
        var backup = s.Backup(volume, objectSize: 1 << 20, name: kind);
        return (s, backup, s.Repository.ReadMetadata(backup.Backup));
    }

    private static string ObjectPath(Scratch s, BackupResult b, ObjectDescriptor o) => Path.Combine(s.Repository.ContainerPath(b.Backup), o.Name);

    private static void FlipByte(string path, long at)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        f.Position = at;
        var v = f.ReadByte();
        f.Position = at;
        f.WriteByte((byte)(v ^ 0x5A));
    }

    [Fact]
    public void CorruptCompressedObjectIsReportedByNameAndOffsetAndRestoreStops()
    {
        var (s, b, meta) = Setup("zlib");
        using var _ = s;
        var victim = meta.Objects[1];
        Assert.Equal(Compression.CompressionAlgorithm.Zlib, victim.Compression);
        FlipByte(ObjectPath(s, b, victim), new FileInfo(ObjectPath(s, b, victim)).Length / 2);

        var result = VerifyOperation.Run(s.Repository, b.Backup.Id, includeChain: false);
        Assert.False(result.IsValid);
        var issue = Assert.Single(result.Issues.Select(i => i.ObjectName).Distinct());
        Assert.Equal(victim.Name, issue);
        Assert.All(result.Issues, i => Assert.InRange(i.VolumeOffset!.Value, victim.Offset, victim.End));
        Assert.Contains(result.Issues, i => i.Message.Contains(victim.Name, StringComparison.Ordinal));

        var ex = Assert.Throws<BackupException>(() => s.Restore(b.Backup.Id, s.PathOf("out.img")));
        Assert.Equal(BackupErrorKind.InvalidData, ex.Kind);
        Assert.Contains(victim.Name, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void AnObjectReplacedByASymbolicLinkIsReportedAsALinkNotAsMissing()
    {
        if (OperatingSystem.IsWindows())
        {
            return; // symbolic links need a privilege there; the POSIX store refuses reparse points alike
        }

        var (s, b, meta) = Setup("link");
        using var _ = s;
        var victim = meta.Objects[1];
        var path = ObjectPath(s, b, victim);
        var elsewhere = s.PathOf("real-object");
        File.Move(path, elsewhere);
        File.CreateSymbolicLink(path, elsewhere); // the same bytes, behind a link

        var result = VerifyOperation.Run(s.Repository, b.Backup.Id, includeChain: false);
        var issue = Assert.Single(result.Issues);
        Assert.Equal(VerificationProblem.ObjectPathIsSymbolicLink, issue.Problem);
        Assert.Equal(victim.Name, issue.ObjectName);
        Assert.Contains("is a symbolic link", issue.Message, StringComparison.Ordinal);
        Assert.Contains(path, issue.Message, StringComparison.Ordinal);

        var ex = Assert.Throws<BackupException>(() => s.Restore(b.Backup.Id, s.PathOf("out.img")));
        Assert.Equal("ObjectPathIsSymbolicLink", ex.ErrorId);
        Assert.False(File.Exists(s.PathOf("out.img")));
    }

    [Fact]
    public void CorruptRawObjectFailsBlockHashAndMd5()
    {
        var (s, b, meta) = Setup("raw");
        using var _ = s;
        var victim = meta.Objects[^1];
        Assert.Equal(Compression.CompressionAlgorithm.None, victim.Compression);
        FlipByte(ObjectPath(s, b, victim), 40000);

        var result = VerifyOperation.Run(s.Repository, b.Backup.Id, includeChain: false);
        Assert.Contains(result.Issues, i => i.Problem == VerificationProblem.Md5Mismatch && i.ObjectName == victim.Name);
        var blockIssue = Assert.Single(result.Issues, i => i.Problem == VerificationProblem.BlockHashMismatch);
        Assert.Equal(victim.Offset + 32768, blockIssue.VolumeOffset);

        var ex = Assert.Throws<BackupException>(() => s.Restore(b.Backup.Id, s.PathOf("out.img")));
        Assert.Equal("BlockHashMismatch", ex.ErrorId);
        Assert.Contains($"volume offset {victim.Offset + 32768}", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MissingAndStrayObjectsAreReported()
    {
        var (s, b, meta) = Setup("missing");
        using var _ = s;
        File.Delete(ObjectPath(s, b, meta.Objects[2]));
        File.WriteAllText(Path.Combine(s.Repository.ContainerPath(b.Backup), b.Backup.Prefix + "-00099"), "stray");

        var result = VerifyOperation.Run(s.Repository, b.Backup.Id, includeChain: false);
        Assert.Contains(result.Issues, i => i.Problem == VerificationProblem.ObjectMissing && i.ObjectName == meta.Objects[2].Name && i.VolumeOffset == meta.Objects[2].Offset);
        Assert.Contains(result.Issues, i => i.Problem == VerificationProblem.UnexpectedObject && i.ObjectName!.EndsWith("-00099", StringComparison.Ordinal));

        var ex = Assert.Throws<BackupException>(() => s.Restore(b.Backup.Id, s.PathOf("out.img")));
        Assert.Equal("ObjectMissing", ex.ErrorId);
        Assert.False(File.Exists(s.PathOf("out.img")), "nothing is written when an object is known to be missing");
    }

    [Fact]
    public void TamperedHashListIsDetectedByItsChecksum()
    {
        var (s, b, _) = Setup("sha");
        using var _s = s;
        var path = s.Repository.Sha256FilePath(b.Backup);
        var text = File.ReadAllText(path);
        var at = text.IndexOf("\"sha256s\": [", StringComparison.Ordinal) + 20;
        File.WriteAllText(path, text[..at] + (text[at] == 'a' ? 'b' : 'a') + text[(at + 1)..]);

        var ex = Assert.Throws<BackupException>(() => s.Restore(b.Backup.Id, s.PathOf("out.img")));
        Assert.Equal("InvalidSha256File", ex.ErrorId);
        Assert.False(File.Exists(s.PathOf("out.img")));
        Assert.Contains(VerifyOperation.Run(s.Repository, b.Backup.Id, false).Issues, i => i.Problem == VerificationProblem.HashListInvalid);
    }

    /// <summary>
    /// Zero objects (holes, zero runs) are verified by their content being zeros, and stored in
    /// BlockBackup's own encoding by comparing a few bytes: both shortcuts must still catch an
    /// object that does not decode to zeros.
    /// </summary>
    [Fact]
    public void ZeroObjectsThatHoldDataOrAreDamagedAreReported()
    {
        using var s = new Scratch();
        var volume = s.PathOf("holes.img");
        using (var f = new FileStream(volume, FileMode.Create))
        {
            f.SetLength(16 << 20); // one 2 MiB data piece, the rest holes
            var piece = new byte[2 << 20];
            new Random(5).NextBytes(piece);
            f.Position = 6 << 20;
            f.Write(piece);
        }

        var b = s.Backup(volume, objectSize: 4 << 20);
        var meta = s.Repository.ReadMetadata(b.Backup);
        var zeros = meta.Objects.Where(Hashing.ZeroBlock.IsZeroObject).ToList();
        Assert.True(zeros.Count >= 3, "the holes are stored as zero objects");
        Assert.True(VerifyOperation.Run(s.Repository, b.Backup.Id, includeChain: false).IsValid);

        // A zero object replaced by a valid zlib stream of data: decodes fine, but not to zeros.
        var replaced = zeros[0];
        var data = new byte[replaced.Length];
        data.AsSpan().Fill(1);
        var output = new byte[data.Length];
        var (_, n) = new Compression.ObjectEncoder(Compression.CompressionAlgorithm.Zlib).Encode(data, output);
        File.WriteAllBytes(ObjectPath(s, b, replaced), output[..n]);
        // Another one damaged: its canonical bytes no longer match, the full decode reports it.
        var damaged = zeros[1];
        FlipByte(ObjectPath(s, b, damaged), new FileInfo(ObjectPath(s, b, damaged)).Length / 2);

        var result = VerifyOperation.Run(s.Repository, b.Backup.Id, includeChain: false);
        Assert.Contains(result.Issues, i => i.ObjectName == replaced.Name && i.Problem == VerificationProblem.Md5Mismatch && i.VolumeOffset == replaced.Offset);
        Assert.Contains(result.Issues, i => i.ObjectName == replaced.Name && i.Problem == VerificationProblem.BlockHashMismatch);
        Assert.Contains(result.Issues, i => i.ObjectName == damaged.Name);
        Assert.DoesNotContain(result.Issues, i => i.ObjectName is { } name && name != replaced.Name && name != damaged.Name);
    }

    /// <summary>
    /// An incremental whose hash list disagrees with the backup that provides a block on restore
    /// (consistent with its own checksum, so only the chain check can see it) is reported at that
    /// block's offset: the chain would not restore to what the incremental says it holds.
    /// </summary>
    [Fact]
    public void AChainThatDoesNotRestoreToTheRequestedBackupIsReported()
    {
        using var s = new Scratch();
        var volume = s.MixedVolume("chain.img", 4 << 20, seed: 31);
        var full = s.Backup(volume, objectSize: 1 << 20).Backup;
        Scratch.Scribble(volume, 32, writes: 2);
        var incr = s.Backup(volume, incremental: true, objectSize: 1 << 20).Backup;
        Assert.True(VerifyOperation.Run(s.Repository, incr.Id, includeChain: true).IsValid);

        // Change the hash of a block the full backup provides in the incremental's list, and
        // re-seal the list's checksum in the incremental's metadata.
        var covered = s.Repository.ReadMetadata(incr).Objects.Select(o => (o.Offset, o.End)).ToList();
        var block = Enumerable.Range(0, 128).Select(k => (long)k * 32768).First(offset => !covered.Any(c => offset >= c.Offset && offset < c.End));
        var listPath = s.Repository.Sha256FilePath(incr);
        var text = File.ReadAllText(listPath);
        var at = text.IndexOf("\"sha256s\"", StringComparison.Ordinal);
        for (var k = 0; k <= block / 32768; k++)
        {
            at = text.IndexOf('"', text.IndexOf('"', at + 1) + 1); // to the opening quote of entry k
        }

        text = text[..(at + 1)] + (text[at + 1] == 'a' ? 'b' : 'a') + text[(at + 2)..];
        File.WriteAllText(listPath, text);
        var metadataPath = s.Repository.MetadataPath(incr);
        var metadata = Newtonsoft.Json.Linq.JObject.Parse(File.ReadAllText(metadataPath));
        var sealedWith = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(listPath))).ToLowerInvariant();
        foreach (var field in metadata.Descendants().OfType<Newtonsoft.Json.Linq.JProperty>().Where(p => p.Name == "sha256file_sha256").ToList())
        {
            field.Value = sealedWith;
        }

        File.WriteAllText(metadataPath, metadata.ToString(Newtonsoft.Json.Formatting.None));

        var result = VerifyOperation.Run(s.Repository, incr.Id, includeChain: true);
        var issue = Assert.Single(result.Issues);
        Assert.Equal(VerificationProblem.ChainInconsistent, issue.Problem);
        Assert.Equal(block, issue.VolumeOffset);
        Assert.Equal(full.Id, issue.BackupId);
    }
}
