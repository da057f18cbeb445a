using System.Diagnostics;
using BlockBackup.Engine.Compression;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Operations;
using BlockBackup.Engine.Rbd;
using BlockBackup.Engine.Repository;

namespace BlockBackup.Engine.Policies;

/// <summary>
/// Runs a policy now: for each volume a full or incremental backup by the cadence, optional
/// verification, then retention of that volume's backups; one record per volume, and the history
/// in the store. A failing volume does not stop the others. A policy already running on this node
/// is skipped with a record that says so.
/// </summary>
public sealed class PolicyRunner(PolicyStore store, TimeProvider clock, Func<BackupPolicy, RbdClient> ceph)
{
    /// <summary>Expands a policy's -Path entries (wildcards) into volumes; the cmdlet supplies PowerShell's resolution.</summary>
    public Func<string, IEnumerable<string>> ExpandPath { get; init; } = path => [path];

    public Action<string>? Log { get; init; }

    public IReadOnlyList<PolicyRunRecord> Run(BackupPolicy policy, IProgress<OperationProgress>? progress, CancellationToken cancellationToken)
    {
        var started = clock.GetUtcNow();
        using var held = store.TryLock(policy.Name);
        if (held is null)
        {
            return [new PolicyRunRecord
            {
                Policy = policy.Name, Volume = "*", StartedUtc = started, Duration = TimeSpan.Zero, Skipped = true,
                Reason = $"policy '{policy.Name}' is already running on this node; this run was skipped",
            }];
        }

        var records = new List<PolicyRunRecord>();
        IBackupRepository? repository = null;
        RbdClient? client = null;
        RbdClient Ceph() => client ??= ceph(policy);
        try
        {
            repository = RepositoryFactory.Open(PolicyRepository.Resolve(policy), Ceph, create: true);
        }
        catch (BackupException ex)
        {
            records.Add(Failed(policy, "*", started, ex));
        }

        if (repository is not null)
        {
            foreach (var path in policy.Path.SelectMany(ExpandPath).Distinct(StringComparer.Ordinal))
            {
                records.Add(Volume(policy, repository, path, rbd: false, Ceph, progress, cancellationToken));
            }

            foreach (var image in policy.RbdImage)
            {
                records.Add(Volume(policy, repository, image, rbd: true, Ceph, progress, cancellationToken));
            }

            if (policy.VerifyPercent is { } percent && records.Any(r => r.Succeeded))
            {
                var sample = SampledVerification.Run(repository, percent, SampledVerification.StateFileFor(store.Directory, repository.Location), clock, progress, cancellationToken);
                Log?.Invoke($"Verified {sample.UnitsChecked} of {sample.UnitsTotal} units of '{repository.Location}' ({sample.CoveredPercent:0.#}% of the rotation): {(sample.IsValid ? "OK" : $"{sample.Issues.Count} problem(s)")}.");
                if (!sample.IsValid)
                {
                    records.Add(new PolicyRunRecord
                    {
                        Policy = policy.Name, Volume = "*", StartedUtc = clock.GetUtcNow(), Duration = sample.Duration, ErrorId = "SampledVerificationFailed",
                        Error = $"Sampled verification of '{repository.Location}' found {sample.Issues.Count} problem(s): {string.Join("; ", sample.Issues.Take(3))}",
                    });
                }
            }
        }

        foreach (var warning in repository?.TakeWarnings() ?? [])
        {
            Log?.Invoke(warning); // names the listings skipped (stray objects)
        }

        client?.Dispose();
        var state = store.State(policy.Name);
        store.SaveState(policy.Name, new PolicyState(started, [.. state.History, .. records.Select(r => r.ToJson())]));
        return records;
    }

    /// <summary>
    /// What a run would do now, per volume, without writing anything (Invoke-BackupPolicy
    /// -WhatIf): full or incremental and why, and which backups retention would then remove and
    /// why, planned as if the new backup had been made.
    /// </summary>
    public IReadOnlyList<string> Preview(BackupPolicy policy, CancellationToken cancellationToken)
    {
        RbdClient? client = null;
        RbdClient Ceph() => client ??= ceph(policy);
        try
        {
            IBackupRepository repository;
            try
            {
                repository = RepositoryFactory.Open(PolicyRepository.Resolve(policy), Ceph, create: false);
            }
            catch (BackupException ex) when (ex.ErrorId is "RepositoryNotFound" or "ObjectStoreContainerNotFound")
            {
                return [$"a first full backup of each volume into the new repository '{policy.Repository}'; retention would remove nothing"];
            }

            using (repository as IDisposable)
            {
                var listed = repository.List(includeIncomplete: true, cancellationToken);
                var lines = new List<string>();
                var volumes = policy.Path.SelectMany(ExpandPath).Distinct(StringComparer.Ordinal).Select(p => (p, false)).Concat(policy.RbdImage.Select(i => (i, true)));
                foreach (var (volume, rbd) in volumes)
                {
                    lines.Add(PreviewVolume(policy, listed, volume, rbd, Ceph));
                }

                return lines;
            }
        }
        finally
        {
            client?.Dispose();
        }
    }

    private string PreviewVolume(BackupPolicy policy, IReadOnlyList<BackupInfo> listed, string volume, bool rbd, Func<RbdClient> ceph)
    {
        var now = clock.GetUtcNow();
        try
        {
            var (source, volumeId, size) = Identify(volume, rbd, ceph);
            var backups = listed.Where(b => b.VolumeId == volumeId).ToList();
            var available = backups.Where(b => b.Status == BackupStatus.Available).ToList();
            var cadence = CadencePlanner.Decide(available, size, policy, now);
            var planned = new BackupInfo
            {
                Id = Guid.Empty, VolumeId = volumeId, Name = BackupName(policy, now), CreatedUtc = now.UtcDateTime, Status = BackupStatus.Available,
                ParentId = cadence.Full ? null : available.MaxBy(b => (b.CreatedUtc, b.Prefix))?.Id, Policy = policy.Name,
                WrittenBy = "BlockBackup", Repository = policy.Repository, Container = string.Empty, Prefix = string.Empty, VolumeSize = size,
            };
            var plan = PlanRetention(policy, [.. backups, planned], clock);
            var removals = plan.Decisions.Where(d => d.Action == RetentionAction.Remove).ToList();
            var kept = plan.Decisions.Count(d => d.Action == RetentionAction.Keep && d.BackupId != Guid.Empty);
            var removal = removals.Count == 0 ? "retention would remove nothing"
                : $"retention would remove {removals.Count} backup{(removals.Count == 1 ? string.Empty : "s")}: "
                  + string.Join("; ", removals.Select(d => $"{d.BackupId} ({d.Backup.CreatedUtc:yyyy-MM-dd HH:mm:ss}Z, {string.Join(", ", d.Reasons)})"));
            var scope = policy.RetainScope == RetainScope.Policy ? ", only the policy's own are subject to it" : ", every backup of the volume is subject to it";
            return $"'{volume}': {(cadence.Full ? "full" : "incremental")} backup ({cadence.Reason}); {removal}; {kept} kept{scope}";
        }
        catch (Exception ex) when (ex is BackupException or IOException or UnauthorizedAccessException)
        {
            return $"'{volume}': would fail: {ex.Message}";
        }
    }

    /// <summary>A policy's volume as a run and its preview see it: the RBD image (if one), its volume id and its size now.</summary>
    private static (RbdImageRef? Source, Guid VolumeId, long Size) Identify(string volume, bool rbd, Func<RbdClient> ceph)
    {
        if (!rbd)
        {
            return (null, Volumes.VolumeIdentity.ForPath(Volumes.VolumeIdentity.ResolvePath(volume)), SizeOf(volume));
        }

        var source = RbdImageRef.Parse(volume);
        var size = ceph().ImageSize(source) ?? throw new BackupException(BackupErrorKind.NotFound, "RbdNotFound", $"The RBD image {volume} does not exist.", volume);
        return (source, RbdBackupPool.VolumeIdFor(source), size);
    }

    private PolicyRunRecord Volume(BackupPolicy policy, IBackupRepository repository, string volume, bool rbd, Func<RbdClient> ceph, IProgress<OperationProgress>? progress, CancellationToken cancellationToken)
    {
        var started = clock.GetUtcNow();
        var watch = Stopwatch.StartNew();
        try
        {
            var (source, volumeId, size) = Identify(volume, rbd, ceph);
            var backups = repository.List(includeIncomplete: false, cancellationToken).Where(b => b.VolumeId == volumeId).ToList();
            var cadence = CadencePlanner.Decide(backups, size, policy, started);
            Log?.Invoke($"{volume}: {(cadence.Full ? "full" : "incremental")} backup: {cadence.Reason}.");
            var backup = Backup(policy, repository, volume, source, !cadence.Full, ceph, progress, cancellationToken);

            bool? verified = null;
            if (policy.Verify)
            {
                var result = repository.Verify(backup.Id, includeChain: false, progress, cancellationToken);
                verified = result.IsValid;
                if (!result.IsValid)
                {
                    throw new BackupException(BackupErrorKind.InvalidData, "NewBackupInvalid", $"The new backup {backup.Id} of '{volume}' failed verification: {string.Join("; ", result.Issues.Take(3))}", backup.Id);
                }
            }

            var removed = ApplyRetention(policy, repository, volumeId, cancellationToken);
            return new PolicyRunRecord
            {
                Policy = policy.Name, Volume = volume, StartedUtc = started, Duration = watch.Elapsed, BackupId = backup.Id,
                Type = backup.Type, Reason = cadence.Reason, Verified = verified, Removed = removed,
            };
        }
        catch (BackupException ex)
        {
            return Failed(policy, volume, started, ex) with { Duration = watch.Elapsed };
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return Failed(policy, volume, started, StorageFault.Classify(ex, volume) ?? new BackupException(BackupErrorKind.WriteError, "IOError", ex.Message, volume, ex)) with { Duration = watch.Elapsed };
        }
    }

    private BackupInfo Backup(BackupPolicy policy, IBackupRepository repository, string volume, RbdImageRef? source, bool incremental, Func<RbdClient> ceph,
        IProgress<OperationProgress>? progress, CancellationToken cancellationToken)
    {
        var compression = CompressionNames.Parse(policy.Compression, $"policy '{policy.Name}'");
        var name = BackupName(policy, clock.GetUtcNow());
        var request = new BackupRequest { SourcePath = source?.Spec ?? volume, Name = name, Incremental = incremental, Compression = compression, Log = Log, Policy = policy.Name };
        return (repository, source) switch
        {
            (IChunkedRepository files, null) => BackupOperation.Run(files, request with { ObjectSize = files.DefaultObjectSize }, progress, cancellationToken).Backup,
            (IChunkedRepository files, { } image) => RbdFileBackupOperation.Run(files, ceph(), image, request with { ObjectSize = files.DefaultObjectSize }, 0, progress, cancellationToken).Backup,
            (RbdBackupPool pool, { } image) => RbdBackupOperation.Run(pool, new RbdBackupRequest { Source = image, Name = name, Incremental = incremental, Policy = policy.Name }, progress, cancellationToken).Backup,
            _ => throw new BackupException(BackupErrorKind.NotSupported, "SourceNotSupportedByRepository",
                $"'{repository.Location}' is a Ceph backup pool, which holds backups of RBD images only; policy '{policy.Name}' names the file or device '{volume}'.", volume),
        };
    }

    private IReadOnlyList<Guid> ApplyRetention(BackupPolicy policy, IBackupRepository repository, Guid volumeId, CancellationToken cancellationToken)
    {
        var rule = policy.Retention;   // validated: a policy always keeps something
        var backups = repository.List(includeIncomplete: true, cancellationToken).Where(b => b.VolumeId == volumeId).ToList();
        var plan = PlanRetention(policy, backups, clock);
        foreach (var future in plan.FutureDated)
        {
            Log?.Invoke(RetentionPlanner.FutureDatedWarning(future, plan.EvaluatedAt));
        }

        var removed = new List<Guid>();
        foreach (var backup in plan.RemovalOrder)
        {
            cancellationToken.ThrowIfCancellationRequested();
            foreach (var gone in repository.Remove(backup, includeDependents: false, cancellationToken))
            {
                removed.Add(gone.Id);
                Log?.Invoke($"Removed backup {gone.Id} ({gone.CreatedUtc:u}): {string.Join("; ", plan.Decisions.First(d => d.BackupId == gone.Id).Reasons)}.");
            }
        }

        return removed;
    }

    /// <summary>
    /// The retention plan of one volume's backups: under <see cref="RetainScope.Policy"/> only
    /// the backups the policy made are subject to its rule; the others (made by hand, by Cinder,
    /// by another policy) are kept, and so are the backups they depend on.
    /// </summary>
    public static RetentionPlan PlanRetention(BackupPolicy policy, IReadOnlyList<BackupInfo> backups, TimeProvider clock) =>
        RetentionPlanner.Plan(backups, policy.Retention, clock, policy.RetainScope == RetainScope.Volume ? null : b => Made(policy, b));

    /// <summary>
    /// Whether <paramref name="policy"/> made <paramref name="backup"/>: as recorded in the backup,
    /// or, for backups of versions that recorded nothing, by the name the policy gives its backups.
    /// </summary>
    public static bool Made(BackupPolicy policy, BackupInfo backup) =>
        backup.Policy is { } maker ? string.Equals(maker, policy.Name, StringComparison.Ordinal)
        : backup.WrittenBy == "BlockBackup" && backup.Name is { } name && name.Length == policy.Name.Length + 16 && name.StartsWith(policy.Name + "-", StringComparison.Ordinal)
            && DateTime.TryParseExact(name[(policy.Name.Length + 1)..], NameTimeFormat, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.None, out _);

    private const string NameTimeFormat = "yyyyMMdd-HHmmss";

    private static string BackupName(BackupPolicy policy, DateTimeOffset now) => $"{policy.Name}-{now.UtcDateTime.ToString(NameTimeFormat, System.Globalization.CultureInfo.InvariantCulture)}";

    private static long SizeOf(string path)
    {
        using var volume = Volumes.VolumeSource.Open(path);
        return volume.Size;
    }

    private static PolicyRunRecord Failed(BackupPolicy policy, string volume, DateTimeOffset started, BackupException ex) => new()
    {
        Policy = policy.Name, Volume = volume, StartedUtc = started, Duration = TimeSpan.Zero, Error = ex.Message, ErrorId = ex.ErrorId,
    };
}
