using System.Diagnostics;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Operations;
using BlockBackup.Engine.Repository;
using Xunit;

namespace BlockBackup.Engine.Tests;

/// <summary>A test that needs the RADOS Gateway (S3 and Swift); skipped, with the reason, where none is configured.</summary>
public sealed class RgwFactAttribute : FactAttribute
{
    public RgwFactAttribute()
    {
        if ((ObjectStoreServers.S3SkipReason ?? ObjectStoreServers.SwiftSkipReason) is { } reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>The gateway-outage test stops RGW for everyone: it runs alone, after the tests that run in parallel.</summary>
[CollectionDefinition(nameof(GatewayOutage), DisableParallelization = true)]
public sealed class GatewayOutage;

/// <summary>
/// Faults during object-store backups on the real RGW: the backing-up process killed mid-upload,
/// and the gateway itself killed and restarted. Afterwards nothing partial lists as available,
/// every earlier backup restores byte-identically, and the next backup works at once and removes
/// the leftovers.
/// </summary>
[Collection(nameof(GatewayOutage))]
public class ObjectStoreFaultTests
{
    [RgwFact]
    public void AKilledS3UploadLeavesNothingAvailableAndTheNextBackupCleansUpAtOnce() => KilledUpload(RepositoryKind.S3);

    [RgwFact]
    public void AKilledSwiftUploadLeavesNothingAvailableAndTheNextBackupCleansUpAtOnce() => KilledUpload(RepositoryKind.Swift);

    private static void KilledUpload(RepositoryKind kind)
    {
        using var s = new Scratch();
        var container = RgwRepositories.NewContainer("kill");
        using var repository = RgwRepositories.Open(kind, container);
        var volume = s.PathOf("v.img");
        // Text through bz2: seconds of work, so the upload is caught in the middle (random data
        // would be stored raw at once).
        var line = System.Text.Encoding.ASCII.GetBytes(string.Concat(Enumerable.Range(0, 4096).Select(i => $"block {i * 7919 % 10007} of backup chain {i % 13}; ")));
        using (var file = File.Create(volume))
        {
            while (file.Length < (96L << 20))
            {
                file.Write(line);
            }
        }

        var volumeId = Volumes.VolumeIdentity.ForPath(volume);
        var small = s.MixedVolume("small.img", 2 << 20, 6);
        var earlier = BackupOperation.Run(repository, new BackupRequest { SourcePath = small, VolumeId = volumeId, ObjectSize = 1 << 20, UseSnapshot = false }).Backup;
        var earlierNames = Names(repository, earlier.Prefix);

        var environment = kind == RepositoryKind.S3
            ? new Dictionary<string, string> { ["AWS_ENDPOINT_URL"] = ObjectStoreServers.S3Endpoint!, ["AWS_ACCESS_KEY_ID"] = ObjectStoreServers.S3AccessKey!, ["AWS_SECRET_ACCESS_KEY"] = ObjectStoreServers.S3SecretKey! }
            : new Dictionary<string, string> { ["ST_AUTH"] = ObjectStoreServers.SwiftAuthUrl!, ["ST_USER"] = ObjectStoreServers.SwiftUser!, ["ST_KEY"] = ObjectStoreServers.SwiftKey! };
        var location = $"{(kind == RepositoryKind.S3 ? "s3" : "swift")}://{container}";
        using var child = Bbk.Start(environment, "backup", volume, location, "--compression", "bz2", "--object-size", "1048576", "--no-snapshot");
        var clock = Stopwatch.StartNew();
        while (Names(repository, "volume_").Count(n => !n.StartsWith(earlier.Prefix, StringComparison.Ordinal)) < 2)
        {
            Assert.False(child.HasExited, $"the backup ended (exit code {(child.HasExited ? child.ExitCode : 0)}) before it could be killed: {(child.HasExited ? child.StandardError.ReadToEnd() : string.Empty)}");
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(90), "the child never started storing objects");
            Thread.Sleep(10);
        }

        Assert.False(child.HasExited, "the backup finished before it could be killed");
        child.Kill(entireProcessTree: true);
        child.WaitForExit();

        // Nothing half-made lists as available; the leftover is recognisably BlockBackup's.
        Assert.Equal([earlier.Id], repository.List().Select(b => b.Id));
        var leftover = Assert.Single(repository.List(includeIncomplete: true), b => b.Id != earlier.Id);
        Assert.Equal("BlockBackup", leftover.WrittenBy);
        Assert.Equal(earlierNames, Names(repository, earlier.Prefix));
        RestoreOperation.Run(repository, new RestoreRequest { BackupId = earlier.Id, TargetPath = s.PathOf("earlier.img") });
        Assert.Equal(Scratch.Sha(small), Scratch.Sha(s.PathOf("earlier.img")));

        // The next backup of the volume takes the dead process's lock at once and removes the leftover.
        clock.Restart();
        var next = BackupOperation.Run(repository, new BackupRequest { SourcePath = small, VolumeId = volumeId, ObjectSize = 1 << 20, UseSnapshot = false }).Backup;
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20), $"the next backup took {clock.Elapsed} (a dead holder's lock must not cost the lease)");
        Assert.DoesNotContain(Names(repository, string.Empty), n => n.Contains(leftover.Id.ToString("D"), StringComparison.Ordinal));
        Assert.Equal([earlier.Id, next.Id], repository.List(includeIncomplete: true).Select(b => b.Id));
        Assert.Empty(Names(repository, ".blockbackup/locks/"));
    }

    [RgwFact]
    public void TheGatewayKilledMidBackupAndRestartedEndsInAClearErrorOrAGoodBackupAndTheNextOneWorks()
    {
        var gateway = RadosGateway.Find(ObjectStoreServers.S3Endpoint!);
        Assert.True(gateway is not null, $"no radosgw process serves {ObjectStoreServers.S3Endpoint} on this host");
        using var s = new Scratch();
        var container = RgwRepositories.NewContainer("rgwkill");
        using var repository = RgwRepositories.Open(RepositoryKind.S3, container);
        var volume = s.MixedVolume("vol.img", 48 << 20, seed: 7);
        var earlier = BackupOperation.Run(repository, new BackupRequest { SourcePath = s.MixedVolume("small.img", 1 << 20, 8), ObjectSize = 1 << 20, UseSnapshot = false }).Backup;

        Exception? failure = null;
        BackupInfo? made = null;
        var backup = Task.Run(() =>
        {
            try
            {
                made = BackupOperation.Run(repository, new BackupRequest { SourcePath = volume, ObjectSize = 1 << 20, Compression = Compression.CompressionAlgorithm.Bz2, UseSnapshot = false }).Backup;
            }
            catch (Exception ex)
            {
                failure = ex;
            }
        });
        var clock = Stopwatch.StartNew();
        while (Names(repository, "volume_").Count < 6 && !backup.IsCompleted && clock.Elapsed < TimeSpan.FromSeconds(60))
        {
            Thread.Sleep(20);
        }

        gateway!.KillAndRestart(downFor: TimeSpan.FromSeconds(2));
        Assert.True(backup.Wait(TimeSpan.FromMinutes(5)), "the backup neither finished nor failed within 5 minutes of the outage");

        // Either the retries carried it over the outage, or it failed with a clear error; never a raw one, never half a backup.
        if (failure is not null)
        {
            var clear = Assert.IsType<BackupException>(failure);
            Assert.StartsWith("ObjectStore", clear.ErrorId, StringComparison.Ordinal);
            Assert.Equal([earlier.Id], repository.List().Select(b => b.Id));
        }
        else
        {
            RestoreOperation.Run(repository, new RestoreRequest { BackupId = made!.Id, TargetPath = s.PathOf("made.img") });
            Assert.Equal(Scratch.Sha(volume), Scratch.Sha(s.PathOf("made.img")));
        }

        var next = BackupOperation.Run(repository, new BackupRequest { SourcePath = volume, ObjectSize = 1 << 20, UseSnapshot = false }).Backup;
        RestoreOperation.Run(repository, new RestoreRequest { BackupId = next.Id, TargetPath = s.PathOf("next.img") });
        Assert.Equal(Scratch.Sha(volume), Scratch.Sha(s.PathOf("next.img")));
        Assert.All(repository.List(includeIncomplete: true), b => Assert.Equal(BackupStatus.Available, b.Status));
    }

    private static List<string> Names(ObjectStoreRepository repository, string prefix) =>
        repository.Store.ListAsync(prefix).ToBlockingEnumerable().Select(o => o.Name).ToList();

    /// <summary>The radosgw process serving an endpoint, found by its configuration (rgw frontends = … endpoint=host:port).</summary>
    private sealed class RadosGateway(int pid, string[] commandLine)
    {
        public static RadosGateway? Find(string endpoint)
        {
            var port = new Uri(endpoint).Port;
            foreach (var dir in Directory.EnumerateDirectories("/proc").Where(d => int.TryParse(Path.GetFileName(d), out _)))
            {
                try
                {
                    var args = File.ReadAllText(Path.Combine(dir, "cmdline")).Split('\0', StringSplitOptions.RemoveEmptyEntries);
                    var conf = Array.IndexOf(args, "-c") is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : null;
                    if (args.Length > 0 && Path.GetFileName(args[0]) == "radosgw" && conf is not null && File.ReadAllText(conf).Contains($":{port}", StringComparison.Ordinal))
                    {
                        return new RadosGateway(int.Parse(Path.GetFileName(dir), System.Globalization.CultureInfo.InvariantCulture), args);
                    }
                }
                catch (IOException)
                {
                    // gone meanwhile
                }
                catch (UnauthorizedAccessException)
                {
                }
            }

            return null;
        }

        /// <summary>SIGKILL, a pause, then the same command line again (radosgw daemonizes itself), until it answers.</summary>
        public void KillAndRestart(TimeSpan downFor)
        {
            using (var process = Process.GetProcessById(pid))
            {
                process.Kill();
                process.WaitForExit();
            }

            Thread.Sleep(downFor);
            // Through a shell that points the daemon's standard streams at /dev/null: a daemon
            // holding the test host's pipes would keep the test run from ending.
            var psi = new ProcessStartInfo("/bin/sh") { UseShellExecute = false };
            psi.ArgumentList.Add("-c");
            psi.ArgumentList.Add("exec \"$@\" </dev/null >/dev/null 2>&1");
            psi.ArgumentList.Add("radosgw");
            foreach (var a in commandLine)
            {
                psi.ArgumentList.Add(a);
            }

            using var start = Process.Start(psi)!;
            start.WaitForExit(30_000);
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < TimeSpan.FromSeconds(60))
            {
                try
                {
                    using var response = http.GetAsync(ObjectStoreServers.S3Endpoint).GetAwaiter().GetResult();
                    return;
                }
                catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
                {
                    Thread.Sleep(200);
                }
            }

            throw new InvalidOperationException("radosgw did not come back within 60 s");
        }
    }
}
