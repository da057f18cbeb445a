using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Operations;
using BlockBackup.Engine.Rbd;
using Xunit;

namespace BlockBackup.Engine.Tests;

/// <summary>RBD → RBD backup pool, on the real test cluster (pools 'rbd' and 'backups').</summary>
public class RbdBackupTests
{
    private const long Size = 24 << 20;

    private sealed class Setup : IDisposable
    {
        public Setup()
        {
            Ceph = new Ceph();
            Pool = new RbdBackupPool(Ceph.Client, "backups");
            Source = Ceph.NewImage(size: Size);
            Content = new byte[Size];
            var rnd = new Random(11);
            // Data in a few places; the rest never written (holes).
            foreach (var (offset, length) in new[] { (0L, 3 << 20), (8L << 20, 5 << 20), (20L << 20, 1 << 20) })
            {
                var data = new byte[length];
                rnd.NextBytes(data);
                data.CopyTo(Content, offset);
                Ceph.Write(Source, offset, data, Size);
            }
        }

        public Ceph Ceph { get; }
        public RbdBackupPool Pool { get; }
        public RbdImageRef Source { get; }
        public byte[] Content { get; }

        public void Change(long offset, int length, int seed)
        {
            var data = new byte[length];
            new Random(seed).NextBytes(data);
            data.CopyTo(Content, offset);
            Ceph.Write(Source, offset, data, Size);
        }

        public RbdBackupResult Backup(bool incremental = false, string? name = null) =>
            RbdBackupOperation.Run(Pool, new RbdBackupRequest { Source = Source, Incremental = incremental, Name = name });

        public void Dispose()
        {
            foreach (var b in Pool.List().Where(b => b.VolumeId == RbdBackupPool.VolumeIdFor(Source)).OrderByDescending(b => b.CreatedUtc))
            {
                try
                {
                    RbdBackupOperation.Remove(Pool, b.Id, includeDependents: true);
                }
                catch (BackupException)
                {
                }
            }

            Ceph.Dispose();
        }
    }

    [CephFact]
    public void FullThenDifferentialIncrementalAndEveryRestorePath()
    {
        using var s = new Setup();
        var full = s.Backup(name: "full");
        Assert.False(full.Differential);
        Assert.Equal($"volume-{RbdBackupPool.VolumeIdFor(s.Source):D}.backup.{full.Backup.Id:D}", full.Backup.Container);
        Assert.Matches(RbdBackupPool.SnapshotRegex(), full.Backup.Prefix);
        Assert.Contains(s.Ceph.Client.Snapshots(s.Source), x => x.Name == full.Backup.Prefix);
        Assert.Equal("full", full.Backup.Name);
        var atFull = (byte[])s.Content.Clone();

        s.Change(9 << 20, 256 * 1024, seed: 1);
        var incr = s.Backup(incremental: true);
        Assert.True(incr.Differential);
        Assert.Equal(full.Backup.Id, incr.Backup.ParentId);
        Assert.Equal(full.Backup.Container, incr.Backup.Container); // incrementals reuse the parent's base
        Assert.True(incr.DiffBytes < full.DiffBytes / 10, $"the incremental moved {incr.DiffBytes} bytes vs {full.DiffBytes}: it must cost what changed");
        Assert.Equal([full.Backup.Id, incr.Backup.Id], s.Pool.List().Where(b => b.VolumeId == full.Backup.VolumeId).Select(b => b.Id));

        // 1. An empty RBD target: differential.
        var empty = s.Ceph.NewImage();
        var r1 = RbdRestoreOperation.Run(s.Pool, new RbdRestoreRequest { BackupId = incr.Backup.Id, TargetImage = empty });
        Assert.Equal((RestorePath.Differential, RbdRestoreEligibility.DifferentialAllowed), (r1.Path, r1.Decision.Rule));
        Assert.Equal(s.Content, s.Ceph.Read(empty));

        // The older backup restores to its own point in time, differentially too.
        var empty2 = s.Ceph.NewImage();
        var r1b = RbdRestoreOperation.Run(s.Pool, new RbdRestoreRequest { BackupId = full.Backup.Id, TargetImage = empty2 });
        Assert.Equal(RestorePath.Differential, r1b.Path);
        Assert.Equal(atFull, s.Ceph.Read(empty2));

        // 2. A target with extents: refused without overwrite; with it, a full copy that leaves nothing old behind.
        var dirty = s.Ceph.NewImage(size: Size);
        var junk = new byte[Size];
        new Random(99).NextBytes(junk);
        s.Ceph.Write(dirty, 0, junk, Size);
        Assert.Equal("TargetHasData", Assert.Throws<BackupException>(() => RbdRestoreOperation.Run(s.Pool, new RbdRestoreRequest { BackupId = full.Backup.Id, TargetImage = dirty })).ErrorId);
        var r2 = RbdRestoreOperation.Run(s.Pool, new RbdRestoreRequest { BackupId = full.Backup.Id, TargetImage = dirty, Overwrite = true });
        Assert.Equal((RestorePath.Full, RbdRestoreEligibility.TargetHasExtents), (r2.Path, r2.Decision.Rule));
        Assert.Equal(atFull, s.Ceph.Read(dirty));

        // 3. The backup's own source volume: a full copy.
        var r3 = RbdRestoreOperation.Run(s.Pool, new RbdRestoreRequest { BackupId = full.Backup.Id, TargetImage = s.Source, Overwrite = true });
        Assert.Equal((RestorePath.Full, RbdRestoreEligibility.TargetIsSourceVolume), (r3.Path, r3.Decision.Rule));
        Assert.Equal(atFull, s.Ceph.Read(s.Source));

        // 4. A file target: a full sparse copy.
        using var scratch = new Scratch();
        var file = scratch.PathOf("restored.img");
        var r4 = RbdRestoreOperation.Run(s.Pool, new RbdRestoreRequest { BackupId = incr.Backup.Id, TargetPath = file });
        Assert.Equal((RestorePath.Full, RbdRestoreEligibility.TargetNotRbd), (r4.Path, r4.Decision.Rule));
        Assert.Equal(s.Content, File.ReadAllBytes(file));

        // 5. The newest backup's snapshot removed from the base: no restore point, full copy of the base.
        s.Ceph.Client.RemoveSnapshot(s.Pool.Image(incr.Backup.Container), incr.Backup.Prefix);
        var plan = RbdRestoreOperation.Plan(s.Pool, new RbdRestoreRequest { BackupId = full.Backup.Id, TargetPath = scratch.PathOf("x.img") });
        Assert.Equal(RbdRestoreEligibility.TargetNotRbd, plan.Decision.Rule);
    }

    [CephFact]
    public void RemovedSnapshotMeansNoRestorePointAndAFullCopyOfTheBase()
    {
        using var s = new Setup();
        var full = s.Backup(name: "lonely");
        var baseImage = s.Pool.Image(full.Backup.Container);
        s.Ceph.Client.RemoveSnapshot(baseImage, full.Backup.Prefix);
        var listed = Assert.Single(s.Pool.List(), b => b.Id == full.Backup.Id); // still known from its record
        Assert.Contains("is gone", listed.Problem, StringComparison.Ordinal);

        var target = s.Ceph.NewImage();
        var r = RbdRestoreOperation.Run(s.Pool, new RbdRestoreRequest { BackupId = full.Backup.Id, TargetImage = target });
        Assert.Equal((RestorePath.Full, RbdRestoreEligibility.NoRestorePoint), (r.Path, r.Decision.Rule));
        Assert.Equal(s.Content, s.Ceph.Read(target));
    }

    [CephFact]
    public void MissingBaseImageMeansAFullCopyFromWhereTheDataStillIs()
    {
        using var s = new Setup();
        var full = s.Backup();
        // The base renamed to Cinder's legacy name: the recorded base is missing, the data is not.
        var legacy = s.Pool.Image($"volume-{full.Backup.VolumeId:D}.backup.base");
        var (code, output) = Shell.Run("rbd", "--conf", Ceph.ConfPath!, "rename", s.Pool.Image(full.Backup.Container).Spec, legacy.Spec);
        Assert.True(code == 0, output);
        s.Ceph.Track(legacy);

        var file = Path.Combine(Path.GetTempPath(), $"bbt-{Guid.NewGuid():N}.img");
        try
        {
            var r = RbdRestoreOperation.Run(s.Pool, new RbdRestoreRequest { BackupId = full.Backup.Id, TargetPath = file });
            Assert.Equal((RestorePath.Full, RbdRestoreEligibility.BaseImageMissing), (r.Path, r.Decision.Rule));
            Assert.Equal(s.Content, File.ReadAllBytes(file));
        }
        finally
        {
            File.Delete(file);
            RbdBackupOperation.Remove(s.Pool, full.Backup.Id, includeDependents: true);
        }
    }

    [CephFact]
    public void IncrementalWithoutTheParentsSnapshotOnTheSourceBecomesFull()
    {
        using var s = new Setup();
        var full = s.Backup();
        s.Ceph.Client.RemoveSnapshot(s.Source, full.Backup.Prefix);
        s.Change(0, 4096, seed: 7);
        var next = s.Backup(incremental: true);
        Assert.False(next.Differential);
        Assert.Null(next.Backup.ParentId);
        Assert.Contains("no longer on", next.Reason, StringComparison.Ordinal);
        Assert.NotEqual(full.Backup.Container, next.Backup.Container);
        var target = s.Ceph.NewImage();
        RbdRestoreOperation.Run(s.Pool, new RbdRestoreRequest { BackupId = next.Backup.Id, TargetImage = target });
        Assert.Equal(s.Content, s.Ceph.Read(target));
    }

    [CephFact]
    public void AFailedDifferentialTransferFallsBackToAFullCopy()
    {
        using var s = new Setup();
        var full = s.Backup();
        // An empty target that already has a snapshot named like the restore point: eligible for a
        // differential restore, but the transfer refuses to create the end snapshot again (as import-diff does: EEXIST).
        var target = s.Ceph.NewImage(size: Size);
        s.Ceph.Client.CreateSnapshot(target, full.Backup.Prefix);
        var r = RbdRestoreOperation.Run(s.Pool, new RbdRestoreRequest { BackupId = full.Backup.Id, TargetImage = target });
        Assert.Equal((RestorePath.Full, RbdRestoreEligibility.DifferentialFailed), (r.Path, r.Decision.Rule));
        Assert.Contains("already exists", r.Decision.Reason, StringComparison.Ordinal);
        Assert.Equal(s.Content, s.Ceph.Read(target));
    }

    [CephFact]
    public void ACancelledBackupLeavesNothingBehind()
    {
        using var s = new Setup();
        var before = s.Ceph.Client.ListImages("backups").ToHashSet();
        using var cts = new CancellationTokenSource();
        var progress = new Inline(p => { if (p.Phase == OperationPhase.Writing) cts.Cancel(); });
        Assert.ThrowsAny<OperationCanceledException>(() => RbdBackupOperation.Run(s.Pool, new RbdBackupRequest { Source = s.Source }, progress, cts.Token));
        Assert.Equal(before, s.Ceph.Client.ListImages("backups").ToHashSet());
        Assert.DoesNotContain(s.Ceph.Client.Snapshots(s.Source), x => RbdBackupPool.SnapshotRegex().IsMatch(x.Name));
    }

    [CephFact]
    public void DeleteRefusesWhileDependentsExistThenRemovesSnapshotsAndTheBase()
    {
        using var s = new Setup();
        var full = s.Backup();
        s.Change(2 << 20, 8192, seed: 3);
        var incr = s.Backup(incremental: true);
        Assert.Equal("BackupHasDependents", Assert.Throws<BackupException>(() => RbdBackupOperation.Remove(s.Pool, full.Backup.Id, false)).ErrorId);

        var removed = RbdBackupOperation.Remove(s.Pool, incr.Backup.Id, false);
        Assert.Equal([incr.Backup.Id], removed.Select(b => b.Id));
        Assert.DoesNotContain(s.Ceph.Client.Snapshots(s.Source), x => x.Name == incr.Backup.Prefix);
        Assert.NotNull(s.Ceph.Client.ImageSize(s.Pool.Image(full.Backup.Container)));

        RbdBackupOperation.Remove(s.Pool, full.Backup.Id, false);
        Assert.Null(s.Ceph.Client.ImageSize(s.Pool.Image(full.Backup.Container)));
        Assert.DoesNotContain(s.Ceph.Client.Snapshots(s.Source), x => RbdBackupPool.SnapshotRegex().IsMatch(x.Name));
    }

    private sealed class Inline(Action<OperationProgress> action) : IProgress<OperationProgress>
    {
        public void Report(OperationProgress value) => action(value);
    }
}
