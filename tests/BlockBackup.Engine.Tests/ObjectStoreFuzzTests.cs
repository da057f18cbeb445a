using System.Globalization;
using System.Text;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Format;
using BlockBackup.Engine.ObjectStores;
using BlockBackup.Engine.Operations;
using BlockBackup.Engine.Repository;
using CsCheck;
using Xunit;
using Xunit.Abstractions;

namespace BlockBackup.Engine.Tests;

/// <summary>
/// The object-store side of <see cref="RepositoryFuzzTests"/>: an S3-layout repository in memory
/// whose objects and bookkeeping (in-flight records, lock claims, read leases) are mutated or
/// planted, as anyone who may write the bucket could, including stray names the naming pattern
/// admits but no backup can have and twins reusing a backup's id. Each case lists, verifies and
/// restores both backups, then cleans up leftovers and applies retention: every outcome must be a BackupException with a
/// stable id or a byte-identical restore, and a backup that restored exactly before the cleanup
/// must still restore exactly after them (neither takes what it was not meant to).
/// </summary>
public sealed class ObjectStoreFuzzTests(ITestOutputHelper output)
{
    private const int Cases = 300;

    private enum Plant { MutateObject, DeleteObject, StrayName, TwinObject, InFlightRecord, LockClaim, ReadLease }

    [Fact]
    public void EveryMutatedOrPlantedObjectGivesAClearErrorOrAnExactRestore()
    {
        using var s = new Scratch();
        var pristine = new MemoryObjectStore();
        var repository = new ObjectStoreRepository(pristine, RepositoryKind.S3, "volumebackups");
        var volumeId = Guid.Parse("5e5e5e5e-0000-4000-8000-000000000001");
        var volume = s.MixedVolume("vol.img", 3 << 20, seed: 170);
        BackupInfo Backup(bool incremental) => BackupOperation.Run(repository, new BackupRequest
        {
            SourcePath = volume, Incremental = incremental, ObjectSize = 512 << 10, UseSnapshot = false, VolumeId = volumeId,
        }).Backup;
        var full = Backup(incremental: false);
        var fullSha = Scratch.Sha(volume);
        Scratch.Scribble(volume, 171);
        var incremental = Backup(incremental: true);
        var incrementalSha = Scratch.Sha(volume);
        // In a fixed order whatever the (random) ids and times in the names: by backup, then by role.
        string Role(string name) => (name.StartsWith(full.Prefix, StringComparison.Ordinal) ? "1" : "2") + name[(name.LastIndexOf('_') + 1)..];
        var names = Objects(pristine).Keys.OrderBy(Role, StringComparer.Ordinal).ToList();
        Assert.DoesNotContain(names, n => n.StartsWith(".blockbackup/", StringComparison.Ordinal)); // nothing left over: the cases plant it

        var pcg = new PCG(17, 20261208);
        var gen = Gen.Select(Gen.Enum<Plant>(), Gen.Int[0, names.Count - 1], Gen.Enum<RepositoryFuzzTests.Mutation>(), Gen.Int[0, int.MaxValue]);
        var outcomes = new Dictionary<string, int>();
        var perPlant = new Dictionary<Plant, int>();
        for (var i = 0; i < Cases; i++)
        {
            var (plant, index, mutation, salt) = gen.Generate(pcg, null, out _);
            var store = Copy(pristine);
            var what = $"case {i}: {plant} {(plant == Plant.MutateObject ? mutation + " of " : "")}{names[index]} (salt {salt})";
            try
            {
                what += Apply(store, plant, names[index], mutation, new Random(salt), full, incremental);
                var copy = new ObjectStoreRepository(store, RepositoryKind.S3, "volumebackups") { LockTimeout = TimeSpan.FromMilliseconds(300) };
                var outcome = Exercise(copy, [(incremental.Id, incrementalSha), (full.Id, fullSha)], s.PathOf($"target-{i}.img"));
                outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
                perPlant[plant] = perPlant.GetValueOrDefault(plant) + 1;
            }
            catch (Exception ex)
            {
                throw new Xunit.Sdk.XunitException($"{what}: {ex.GetType().Name}: {ex.Message}\n{ex.StackTrace}");
            }
            finally
            {
                File.Delete(s.PathOf($"target-{i}.img"));
            }
        }

        output.WriteLine(string.Join(", ", outcomes.OrderBy(o => o.Key, StringComparer.Ordinal).Select(o => $"{o.Key}: {o.Value}")));
        output.WriteLine("cases per plant: " + string.Join(", ", perPlant.OrderBy(p => p.Key).Select(p => $"{p.Key}: {p.Value}")));
        Assert.Contains(outcomes.Keys, k => k.StartsWith("error", StringComparison.Ordinal));
        Assert.Contains(outcomes.Keys, k => k.Contains("exact", StringComparison.Ordinal));
    }

    /// <summary>Mutates or plants one thing in <paramref name="store"/>; returns what it did, for the failure message.</summary>
    private static string Apply(MemoryObjectStore store, Plant plant, string victim, RepositoryFuzzTests.Mutation mutation, Random rnd, BackupInfo full, BackupInfo incremental)
    {
        var objects = Objects(store);
        var target = rnd.Next(2) == 0 ? full : incremental;
        var vid = ObjectNaming.FormatId(full.VolumeId);
        var someTime = new DateTime(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc).AddMinutes(rnd.Next(1_000_000));
        switch (plant)
        {
            case Plant.MutateObject:
                var metadataName = victim.EndsWith(ObjectNaming.Sha256FileSuffix, StringComparison.Ordinal)
                    ? victim[..^ObjectNaming.Sha256FileSuffix.Length] + ObjectNaming.MetadataSuffix : null;
                var (bytes, metadata) = RepositoryFuzzTests.Mutate(objects[victim], mutation, rnd, metadataName is null ? null : objects[metadataName]);
                Put(store, victim, bytes);
                if (metadata is not null)
                {
                    Put(store, metadataName!, metadata);
                }

                return "";
            case Plant.DeleteObject:
                store.DeleteAsync(victim).GetAwaiter().GetResult();
                return "";
            case Plant.StrayName:
                // Names the pattern admits but no backup can have; sometimes carrying a real object's bytes.
                var suffix = new[] { "_metadata", "_sha256file", "-00001" }[rnd.Next(3)];
                var stray = rnd.Next(3) switch
                {
                    0 => $"volume_{vid}/99999999999999/az_nova_backup_{target.Id:D}{suffix}",
                    1 => $"volume_------------------------------------/{someTime:yyyyMMddHHmmss}/az_nova_backup_{target.Id:D}{suffix}",
                    _ => $"volume_{vid}/{someTime:yyyyMMddHHmmss}/az_nova_backup_{new string('f', 34)}-0{suffix}",
                };
                Put(store, stray, rnd.Next(2) == 0 ? objects[victim] : Encoding.UTF8.GetBytes("{}"));
                return $" as {stray}";
            case Plant.TwinObject:
                // A real object copied under another prefix with the same backup id (a twin of that backup).
                var twin = ObjectNaming.ObjectStorePrefix("", target.VolumeId, someTime, "nova", target.Id) + (victim.EndsWith("_metadata", StringComparison.Ordinal) ? "_sha256file" : "-00001");
                Put(store, twin, objects[victim]);
                return $" as {twin}";
            case Plant.InFlightRecord:
                var prefix = rnd.Next(4) switch
                {
                    0 => ObjectNaming.ObjectStorePrefix("", target.VolumeId, someTime, "nova", target.Id),   // another place, the same id
                    1 => target.Prefix,                                                                     // the committed backup itself
                    2 => ObjectNaming.ObjectStorePrefix("", Guid.NewGuid(), someTime, "nova", target.Id),   // another volume's name
                    _ => "../" + target.Prefix,
                };
                var record = rnd.Next(4) switch
                {
                    0 => "{\"backup_id\": 7}",
                    1 => $"{{\"backup_id\":\"{target.Id:D}\",\"volume_id\":\"{target.VolumeId:D}\",\"prefix\":\"{prefix}\",\"started\":\"9999-12-31T00:00:00Z\",\"pid\":99999999999}}",
                    2 => $"{{\"backup_id\":\"{target.Id:D}\",\"volume_id\":\"{target.VolumeId:D}\",\"prefix\":\"{prefix}\",\"started\":\"{someTime:O}\",\"host\":\"elsewhere\",\"pid\":4242,\"snapshot\":\"/nonexistent/clone\"}}",
                    _ => $"{{\"backup_id\":\"{Guid.NewGuid():D}\",\"volume_id\":\"{target.VolumeId:D}\",\"prefix\":\"{prefix}\"}}",
                };
                var key = $".blockbackup/inflight/{target.Id:D}.json";
                Put(store, key, Encoding.UTF8.GetBytes(record));
                return $" as {key}: {record}";
            case Plant.LockClaim or Plant.ReadLease:
                var expires = rnd.Next(4) switch
                {
                    0 => "2020-01-01T00:02:00Z",
                    1 => DateTime.UtcNow.AddMinutes(1).ToString("O", CultureInfo.InvariantCulture),
                    2 => "9999-12-31T00:00:00Z",
                    _ => "soon",
                };
                var claim = $"{{\"token\":\"x\",\"operation\":\"backup\",\"host\":\"elsewhere\",\"pid\":4242,\"acquired\":\"2020-01-01T00:00:00Z\",\"expires\":\"{expires}\",\"backups\":[\"{target.Id:D}\"]}}";
                var lease = $".blockbackup/{(plant == Plant.LockClaim ? "locks" : "readers")}/volume-{vid}/0000000000000000001-planted";
                Put(store, lease, rnd.Next(5) == 0 ? objects[victim] : Encoding.UTF8.GetBytes(claim));
                return $" as {lease}: {claim}";
            default:
                throw new ArgumentOutOfRangeException(nameof(plant));
        }
    }

    /// <summary>
    /// List, verify and restore both backups, clean up leftovers, then restore again every backup
    /// that restored exactly before; returns how it ended. Anything but a BackupException escapes.
    /// </summary>
    private static string Exercise(ObjectStoreRepository repository, (Guid Id, string Sha)[] backups, string target)
    {
        var outcome = "exact";
        var exact = new List<(Guid Id, string Sha)>();
        var listed = repository.List(includeIncomplete: true);
        Assert.All(listed.Where(b => b.Status == BackupStatus.Damaged), b => Assert.False(string.IsNullOrWhiteSpace(b.Problem)));
        Assert.All(((IBackupRepository)repository).TakeWarnings(), w => Assert.Contains("cannot be one", w, StringComparison.Ordinal));
        foreach (var (id, sha) in backups)
        {
            try
            {
                var verification = repository.Verify(id, includeChain: true);
                Assert.All(verification.Issues, issue => Assert.False(string.IsNullOrWhiteSpace(issue.Message)));
                if (Restore(repository, id, sha, target) is { } error)
                {
                    outcome = "error " + error;
                    continue;
                }

                exact.Add((id, sha));
            }
            catch (BackupException ex)
            {
                Assert.False(string.IsNullOrWhiteSpace(ex.ErrorId));
                outcome = "error " + ex.ErrorId;
            }
        }

        try
        {
            repository.RemoveIncomplete(TimeSpan.Zero);
        }
        catch (BackupException ex)
        {
            Assert.False(string.IsNullOrWhiteSpace(ex.ErrorId));
            outcome += ", cleanup " + ex.ErrorId;
        }

        // Limit-VolumeBackup -KeepLast 1 -RemoveDamaged as the cmdlet does it: the newest backup and
        // the chain it needs stay, whatever else (a twin with its id, a damaged one) goes.
        try
        {
            var plan = Policies.RetentionPlanner.Plan(repository.List(includeIncomplete: true), new Policies.RetentionRule { KeepLast = 1, RemoveDamaged = true }, DateTimeOffset.UtcNow, TimeZoneInfo.Utc);
            foreach (var b in plan.RemovalOrder)
            {
                ((IBackupRepository)repository).Remove(b, includeDependents: false);
            }
        }
        catch (BackupException ex)
        {
            Assert.False(string.IsNullOrWhiteSpace(ex.ErrorId));
            outcome += ", retention " + ex.ErrorId;
        }

        foreach (var (id, sha) in exact)
        {
            // What restored exactly must still do so: a cleanup or retention that took part of it lost data.
            Assert.Null(Restore(repository, id, sha, target));
        }

        return outcome;
    }

    /// <summary>Null for a byte-identical restore, else the error's id (a failed restore leaves no target).</summary>
    private static string? Restore(ObjectStoreRepository repository, Guid id, string sha, string target)
    {
        try
        {
            File.Delete(target);
            RestoreOperation.Run(repository, new RestoreRequest { BackupId = id, TargetPath = target });
        }
        catch (BackupException ex)
        {
            Assert.False(string.IsNullOrWhiteSpace(ex.ErrorId));
            Assert.False(File.Exists(target), $"a failed restore left '{target}'");
            return ex.ErrorId;
        }

        Assert.Equal(sha, Scratch.Sha(target));
        return null;
    }

    private static Dictionary<string, byte[]> Objects(MemoryObjectStore store) =>
        store.ListAsync("").ToBlockingEnumerable().ToDictionary(o => o.Name, o =>
        {
            using var stream = store.GetAsync(o.Name).GetAwaiter().GetResult();
            using var buffer = new MemoryStream();
            stream.CopyTo(buffer);
            return buffer.ToArray();
        }, StringComparer.Ordinal);

    private static MemoryObjectStore Copy(MemoryObjectStore from)
    {
        var to = new MemoryObjectStore();
        foreach (var (name, bytes) in Objects(from))
        {
            Put(to, name, bytes);
        }

        return to;
    }

    private static void Put(MemoryObjectStore store, string name, byte[] bytes) =>
        store.PutAsync(name, new MemoryStream(bytes), bytes.Length, PutOptions.Default, CancellationToken.None).GetAwaiter().GetResult();
}
