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
            repository = RepositoryFactory.Open(RepositoryLocation.Parse(policy.Repository, Path.GetFullPath), Ceph, create: true);
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

    private PolicyRunRecord Volume(BackupPolicy policy, IBackupRepository repository, string volume, bool rbd, Func<RbdClient> ceph, IProgress<OperationProgress>? progress, CancellationToken cancellationToken)
    {
        var started = clock.GetUtcNow();
        var watch = Stopwatch.StartNew();
        try
        {
            var source = rbd ? RbdImageRef.Parse(volume) : null;
            var volumeId = rbd ? RbdBackupPool.VolumeIdFor(source!) : Volumes.VolumeIdentity.ForPath(Volumes.VolumeIdentity.ResolvePath(volume));
            var size = rbd ? ceph().ImageSize(source!) ?? throw new BackupException(BackupErrorKind.NotFound, "RbdNotFound", $"The RBD image {volume} does not exist.", volume) : SizeOf(volume);
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
        var name = $"{policy.Name}-{clock.GetUtcNow():yyyyMMdd-HHmmss}";
        var request = new BackupRequest { SourcePath = source?.Spec ?? volume, Name = name, Incremental = incremental, Compression = compression, Log = Log };
        return (repository, source) switch
        {
            (IChunkedRepository files, null) => BackupOperation.Run(files, request with { ObjectSize = files.DefaultObjectSize }, progress, cancellationToken).Backup,
            (IChunkedRepository files, { } image) => RbdFileBackupOperation.Run(files, ceph(), image, request with { ObjectSize = files.DefaultObjectSize }, 0, progress, cancellationToken).Backup,
            (RbdBackupPool pool, { } image) => RbdBackupOperation.Run(pool, new RbdBackupRequest { Source = image, Name = name, Incremental = incremental }, progress, cancellationToken).Backup,
            _ => throw new BackupException(BackupErrorKind.NotSupported, "SourceNotSupportedByRepository",
                $"'{repository.Location}' is a Ceph backup pool, which holds backups of RBD images only; policy '{policy.Name}' names the file or device '{volume}'.", volume),
        };
    }

    private IReadOnlyList<Guid> ApplyRetention(BackupPolicy policy, IBackupRepository repository, Guid volumeId, CancellationToken cancellationToken)
    {
        var rule = policy.Retention;   // validated: a policy always keeps something
        var backups = repository.List(includeIncomplete: true, cancellationToken).Where(b => b.VolumeId == volumeId).ToList();
        var plan = RetentionPlanner.Plan(backups, rule, clock);
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
