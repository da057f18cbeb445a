using System.Text;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Operations;
using BlockBackup.Engine.Repository;
using CsCheck;
using Xunit;
using Xunit.Abstractions;

namespace BlockBackup.Engine.Tests;

/// <summary>
/// Mutates real repository files (metadata, hash lists, objects, listing caches) and asserts the
/// only two acceptable outcomes: a clear BackupException (or a Damaged listing / an invalid
/// verification) naming what is wrong, or a byte-identical restore. A fixed PCG seed and a bounded
/// count keep it reproducible in CI; a failure prints the case to replay.
/// </summary>
public sealed class RepositoryFuzzTests(ITestOutputHelper output)
{
    private const int Cases = 300;

    internal enum Mutation { FlipByte, Truncate, AppendGarbage, InvalidUtf8, HugeNumber, NegativeNumber, WrongType, Empty, Int32Overflow, WrongBlockSize }

    [Fact]
    public void EveryMutatedFileGivesAClearErrorOrAnExactRestore()
    {
        using var s = new Scratch();
        var volume = s.MixedVolume("vol.img", 3 << 20, seed: 70);
        var full = s.Backup(volume, objectSize: 512 << 10).Backup;
        var fullSha = Scratch.Sha(volume);
        Scratch.Scribble(volume, 71);
        var incremental = s.Backup(volume, incremental: true, objectSize: 512 << 10).Backup;
        var incrementalSha = Scratch.Sha(volume);
        s.Repository.List();   // listing caches written
        // In a fixed order whatever the (random) ids and times in the names: by backup, then by role.
        string Role(string f)
        {
            var name = Path.GetFileName(f);
            var owner = f.Contains(full.Id.ToString(), StringComparison.Ordinal) ? "1" : "2";
            return owner + (name.EndsWith("_metadata", StringComparison.Ordinal) ? "a" : name.EndsWith("_sha256file", StringComparison.Ordinal) ? "b" : name == "blockbackup.json" ? "c" : "d" + name[^5..]);
        }

        var pristine = Directory.EnumerateFiles(s.RepoPath, "*", SearchOption.AllDirectories)
            .Where(f => !f.Contains(".blockbackup", StringComparison.Ordinal)).OrderBy(Role, StringComparer.Ordinal).ToList();

        var pcg = new PCG(11, 20261201);
        var gen = Gen.Select(Gen.Int[0, pristine.Count - 1], Gen.Enum<Mutation>(), Gen.Int[0, int.MaxValue]);
        var outcomes = new Dictionary<string, int>();
        for (var i = 0; i < Cases; i++)
        {
            var (fileIndex, mutation, salt) = gen.Generate(pcg, null, out _);
            var copy = s.PathOf($"case-{i}");
            CopyDirectory(s.RepoPath, copy);
            var victim = Path.Combine(copy, Path.GetRelativePath(s.RepoPath, pristine[fileIndex]));
            Mutate(victim, mutation, new Random(salt), MetadataOf(victim));
            var what = $"case {i}: {mutation} of {Path.GetRelativePath(copy, victim)} (salt {salt})";
            try
            {
                var outcome = Exercise(BackupRepository.Open(copy, create: false), full.Id, fullSha, incremental.Id, incrementalSha, s.PathOf($"target-{i}.img"));
                outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
            }
            catch (Exception ex)
            {
                throw new Xunit.Sdk.XunitException($"{what}: {ex.GetType().Name}: {ex.Message}\n{ex.StackTrace}");
            }
            finally
            {
                Directory.Delete(copy, recursive: true);
                File.Delete(s.PathOf($"target-{i}.img"));
            }
        }

        output.WriteLine(string.Join(", ", outcomes.OrderBy(o => o.Key).Select(o => $"{o.Key}: {o.Value}")));
        Assert.True(outcomes.Keys.Count(k => k.StartsWith("error", StringComparison.Ordinal)) > 0, "no mutation was ever detected: the fuzzer does not reach the checks");
    }

    /// <summary>List, verify and restore both backups; returns how it ended. Anything but a BackupException escapes.</summary>
    private static string Exercise(BackupRepository repository, Guid full, string fullSha, Guid incremental, string incrementalSha, string target)
    {
        var listed = repository.List(includeIncomplete: true);
        var outcome = "exact";
        foreach (var (id, sha) in new[] { (incremental, incrementalSha), (full, fullSha) })
        {
            var entry = listed.FirstOrDefault(b => b.Id == id);
            if (entry is { Status: BackupStatus.Damaged })
            {
                Assert.False(string.IsNullOrWhiteSpace(entry.Problem));
            }

            var verification = repository.Verify(id, includeChain: true);
            Assert.All(verification.Issues, issue => Assert.False(string.IsNullOrWhiteSpace(issue.Message)));
            try
            {
                File.Delete(target);
                RestoreOperation.Run(repository, new RestoreRequest { BackupId = id, TargetPath = target });
            }
            catch (BackupException ex)
            {
                Assert.False(string.IsNullOrWhiteSpace(ex.ErrorId));
                Assert.False(File.Exists(target), $"a failed restore left '{target}'");
                outcome = "error " + ex.ErrorId;
                continue;
            }

            // A restore that succeeds must be exact, whatever was mutated (some bytes, e.g. a
            // listing cache's, do not matter); and verification must not have called it invalid
            // for a reason that the restore did not notice.
            Assert.Equal(sha, Scratch.Sha(target));
        }

        return outcome;
    }

    /// <summary>The metadata beside a backup's file (same prefix), which records the hash list's checksum.</summary>
    private static string? MetadataOf(string path)
    {
        var name = Path.GetFileName(path);
        return name.EndsWith("_sha256file", StringComparison.Ordinal) ? Path.Combine(Path.GetDirectoryName(path)!, name[..^"_sha256file".Length] + "_metadata") : null;
    }

    private static void Mutate(string path, Mutation mutation, Random rnd, string? metadataPath = null)
    {
        var bytes = File.ReadAllBytes(path);
        var mutated = Mutate(bytes, mutation, rnd, metadataPath is null ? null : File.ReadAllBytes(metadataPath));
        File.WriteAllBytes(path, mutated.Bytes);
        if (mutated.Metadata is { } metadata)
        {
            File.WriteAllBytes(metadataPath!, metadata);
        }
    }

    /// <summary>
    /// One mutation of a file's bytes; a hash list's block size is changed consistently (its
    /// checksum in <paramref name="metadata"/> updated), as a writer who knows the format would,
    /// so that the block size itself is what must be caught. Returns the new metadata bytes then.
    /// </summary>
    internal static (byte[] Bytes, byte[]? Metadata) Mutate(byte[] bytes, Mutation mutation, Random rnd, byte[]? metadata)
    {
        var text = Encoding.UTF8.GetString(bytes);
        var numbers = System.Text.RegularExpressions.Regex.Matches(text, @"(?<=[:\[,]\s*)-?\d+").ToList();
        // The 32-bit fields (metadata format, compression level, block sizes): a value past Int32 in one of them.
        var ints = System.Text.RegularExpressions.Regex.Matches(text, @"(?<=""(format|compression_level|hash_block_size|chunk_size)"":\s*)-?\d+").ToList();
        var blockSize = System.Text.RegularExpressions.Regex.Match(text, @"(?<=""(hash_block_size|chunk_size)"":\s*)\d+");
        if (mutation == Mutation.WrongBlockSize && blockSize.Success)
        {
            var size = long.Parse(blockSize.Value, System.Globalization.CultureInfo.InvariantCulture);
            var changed = Encoding.UTF8.GetBytes(Replace(text, blockSize, (rnd.Next(2) == 0 ? size / 2 : size * 2).ToString(System.Globalization.CultureInfo.InvariantCulture)));
            return (changed, metadata is null ? null : Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(metadata).Replace(
                Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(bytes)).ToLowerInvariant(),
                Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(changed)).ToLowerInvariant(), StringComparison.Ordinal)));
        }

        byte[] result = mutation switch
        {
            Mutation.Int32Overflow when ints.Count > 0 => Encoding.UTF8.GetBytes(Replace(text, ints[rnd.Next(ints.Count)], rnd.Next(2) == 0 ? "2147483648" : "-4294967297")),
            Mutation.Int32Overflow when numbers.Count > 0 => Encoding.UTF8.GetBytes(Replace(text, numbers[rnd.Next(numbers.Count)], "4294967297")),
            Mutation.FlipByte when bytes.Length > 0 => Flip(bytes, rnd),
            Mutation.Truncate when bytes.Length > 1 => bytes[..rnd.Next(1, bytes.Length)],
            Mutation.AppendGarbage => [.. bytes, .. Garbage(rnd)],
            Mutation.InvalidUtf8 when bytes.Length > 0 => Splice(bytes, rnd.Next(bytes.Length), [0xC3, 0x28, 0xFF]),
            Mutation.HugeNumber when numbers.Count > 0 => Encoding.UTF8.GetBytes(Replace(text, numbers[rnd.Next(numbers.Count)], "99999999999999999999999")),
            Mutation.NegativeNumber when numbers.Count > 0 => Encoding.UTF8.GetBytes(Replace(text, numbers[rnd.Next(numbers.Count)], "-1")),
            Mutation.WrongType when numbers.Count > 0 => Encoding.UTF8.GetBytes(Replace(text, numbers[rnd.Next(numbers.Count)], "\"x\"")),
            Mutation.Empty => [],
            _ => Flip(bytes.Length > 0 ? bytes : [0], rnd),
        };
        return (result, null);
    }

    private static byte[] Flip(byte[] bytes, Random rnd)
    {
        var copy = (byte[])bytes.Clone();
        copy[rnd.Next(copy.Length)] ^= (byte)(1 << rnd.Next(8));
        return copy;
    }

    private static byte[] Garbage(Random rnd)
    {
        var g = new byte[rnd.Next(1, 64)];
        rnd.NextBytes(g);
        return g;
    }

    private static byte[] Splice(byte[] bytes, int at, byte[] insert) => [.. bytes[..at], .. insert, .. bytes[at..]];

    private static string Replace(string text, System.Text.RegularExpressions.Match m, string with) => text[..m.Index] + with + text[(m.Index + m.Length)..];

    private static void CopyDirectory(string from, string to)
    {
        foreach (var dir in Directory.EnumerateDirectories(from, "*", SearchOption.AllDirectories))
        {
            Directory.CreateDirectory(Path.Combine(to, Path.GetRelativePath(from, dir)));
        }

        Directory.CreateDirectory(to);
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            var dest = Path.Combine(to, Path.GetRelativePath(from, file));
            File.Copy(file, dest);
            File.SetLastWriteTimeUtc(dest, File.GetLastWriteTimeUtc(file));   // so listing caches stay trusted, as after a real edit-in-place
        }
    }
}
