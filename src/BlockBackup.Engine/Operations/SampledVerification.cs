using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Repository;
using Newtonsoft.Json;
using Newtonsoft.Json.Linq;

namespace BlockBackup.Engine.Operations;

/// <summary>What one sampled verification run checked, and how far the rotation has come.</summary>
public sealed class SampledVerificationResult
{
    public required string Repository { get; init; }
    public required int SamplePercent { get; init; }
    /// <summary>Units checked in this run: objects of file repositories, whole backups of RBD pools.</summary>
    public required int UnitsChecked { get; init; }
    public required int UnitsTotal { get; init; }
    public required long BytesChecked { get; init; }
    /// <summary>The backups whose data this run read.</summary>
    public required IReadOnlyList<Guid> Backups { get; init; }
    public required IReadOnlyList<VerificationIssue> Issues { get; init; }
    public bool IsValid => Issues.Count == 0;
    /// <summary>Share of the units checked since the current rotation began.</summary>
    public required double CoveredPercent { get; init; }
    public required DateTime CycleStartedUtc { get; init; }
    /// <summary>When a rotation last covered every unit (null until one has).</summary>
    public DateTime? LastFullCoverageUtc { get; init; }
    public required TimeSpan Duration { get; init; }

    public override string ToString() =>
        $"{Repository}: {UnitsChecked} of {UnitsTotal} checked ({CoveredPercent:0.#}% of this rotation), {(IsValid ? "OK" : $"{Issues.Count} problem(s)")}";
}

/// <summary>
/// Verifies a rotating sample of a repository (kopia suggests about 1% a day): the units (objects
/// of file repositories, backups of RBD pools) are taken in a fixed pseudo-random order (SHA-256 of
/// backup id and object name), each run continuing where the last stopped, so repeated runs cover
/// everything and new backups join the rotation as the cursor reaches them. The cursor and the
/// coverage times live in a small node-local state file.
/// </summary>
public static class SampledVerification
{
    private const int HistoryKept = 30;

    public static SampledVerificationResult Run(IBackupRepository repository, int samplePercent, string stateFile, TimeProvider clock,
        IProgress<OperationProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        if (samplePercent is < 1 or > 100)
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidSamplePercent", $"-SamplePercent {samplePercent}: give 1 to 100.", samplePercent);
        }

        var watch = Stopwatch.StartNew();
        var now = clock.GetUtcNow().UtcDateTime;
        var units = Units(repository, cancellationToken);
        var state = SampleState.Read(stateFile, repository.Location, now);
        var take = units.Count == 0 ? 0 : (int)Math.Min(units.Count, Math.Ceiling(units.Count * samplePercent / 100.0));

        // The next units after the cursor, wrapping around: a wrap completes a rotation.
        var start = units.FindIndex(u => string.CompareOrdinal(u.Key, state.Cursor) > 0);
        if (start < 0)
        {
            start = 0;
        }

        var sample = Enumerable.Range(0, take).Select(i => units[(start + i) % units.Count]).ToList();
        var issues = new List<VerificationIssue>();
        long bytes = 0;
        foreach (var group in sample.GroupBy(u => u.Backup.Id))
        {
            cancellationToken.ThrowIfCancellationRequested();
            var backup = group.First().Backup;
            var result = repository is IChunkedRepository files && backup.Status == BackupStatus.Available
                ? VerifyOperation.Run(files, backup.Id, includeChain: false, progress, cancellationToken, onlyObjects: group.Select(u => u.Name).ToHashSet(StringComparer.Ordinal))
                : repository.Verify(backup.Id, includeChain: false, progress, cancellationToken);
            issues.AddRange(result.Issues);
            bytes += result.BytesChecked;
        }

        // A rotation is complete once it has checked as many units as there are.
        var covered = state.CoveredInCycle + take;
        var complete = units.Count > 0 && covered >= units.Count;
        var next = state with
        {
            Cursor = take > 0 ? sample[^1].Key : state.Cursor,
            CoveredInCycle = complete ? covered - units.Count : covered,
            CycleStartedUtc = complete ? now : state.CycleStartedUtc,
            LastFullCoverageUtc = complete ? now : state.LastFullCoverageUtc,
        };
        next.Write(stateFile, now, take, issues.Count);
        return new SampledVerificationResult
        {
            Repository = repository.Location,
            SamplePercent = samplePercent,
            UnitsChecked = take,
            UnitsTotal = units.Count,
            BytesChecked = bytes,
            Backups = sample.Select(u => u.Backup.Id).Distinct().ToList(),
            Issues = issues,
            CoveredPercent = units.Count == 0 || complete ? 100 : 100.0 * covered / units.Count,
            CycleStartedUtc = state.CycleStartedUtc,
            LastFullCoverageUtc = next.LastFullCoverageUtc,
            Duration = watch.Elapsed,
        };
    }

    /// <summary>The state file of a repository's rotation in the node's configuration directory.</summary>
    public static string StateFileFor(string configurationDirectory, string location) =>
        Path.Combine(configurationDirectory, "verification", Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(location)))[..16].ToLowerInvariant() + ".json");

    /// <summary>Coverage of a repository's rotation, for status reports (null when it was never sampled).</summary>
    public static (DateTime? LastFullCoverageUtc, DateTime? LastRunUtc)? Coverage(string stateFile) =>
        File.Exists(stateFile) && SampleState.TryRead(stateFile) is { } state ? (state.LastFullCoverageUtc, state.LastRunUtc) : null;

    /// <summary>One thing a run can check: an object of a backup (or a whole pool backup), at its place in the rotation.</summary>
    private sealed record SampleUnit(string Key, BackupInfo Backup, string Name);

    private static List<SampleUnit> Units(IBackupRepository repository, CancellationToken cancellationToken)
    {
        var units = new List<SampleUnit>();
        foreach (var backup in repository.List(includeIncomplete: true, cancellationToken).Where(b => b.Status is BackupStatus.Available or BackupStatus.Damaged))
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (repository is IChunkedRepository files && backup.Status == BackupStatus.Available)
            {
                foreach (var o in files.ReadMetadata(backup).Objects)
                {
                    units.Add(new SampleUnit(Key(backup.Id, o.Name), backup, o.Name));
                }
            }
            else
            {
                units.Add(new SampleUnit(Key(backup.Id, backup.Prefix), backup, backup.Prefix));
            }
        }

        units.Sort((a, b) => string.CompareOrdinal(a.Key, b.Key));
        return units;
    }

    private static string Key(Guid backup, string unit) => Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes($"{backup:D}/{unit}")));

    private sealed record SampleState(string Location, string Cursor, int CoveredInCycle, DateTime CycleStartedUtc, DateTime? LastFullCoverageUtc, DateTime? LastRunUtc, JArray History)
    {
        public static SampleState Read(string path, string location, DateTime now) =>
            TryRead(path) is { } state && state.Location == location ? state : new SampleState(location, string.Empty, 0, now, null, null, []);

        public static SampleState? TryRead(string path)
        {
            try
            {
                var o = Format.JsonDocumentText.ParseObject(File.ReadAllText(path));
                return new SampleState((string)o["location"]!, (string?)o["cursor"] ?? string.Empty, (int?)o["covered_in_cycle"] ?? 0,
                    Format.JsonDocumentText.Time(o["cycle_started"])?.UtcDateTime ?? DateTime.UtcNow, Format.JsonDocumentText.Time(o["last_full_coverage"])?.UtcDateTime,
                    Format.JsonDocumentText.Time(o["last_run"])?.UtcDateTime, o["history"] as JArray ?? []);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or JsonException or FormatException or InvalidCastException or ArgumentException or NullReferenceException)
            {
                return null; // missing or damaged state: the rotation starts again, nothing is lost but position
            }
        }

        public void Write(string path, DateTime now, int checkedUnits, int problems)
        {
            History.Add(new JObject { ["at"] = now.ToString("O", CultureInfo.InvariantCulture), ["checked"] = checkedUnits, ["problems"] = problems });
            while (History.Count > HistoryKept)
            {
                History.RemoveAt(0);
            }

            var o = new JObject
            {
                ["location"] = Location,
                ["cursor"] = Cursor,
                ["covered_in_cycle"] = CoveredInCycle,
                ["cycle_started"] = CycleStartedUtc.ToString("O", CultureInfo.InvariantCulture),
                ["last_full_coverage"] = LastFullCoverageUtc?.ToString("O", CultureInfo.InvariantCulture),
                ["last_run"] = now.ToString("O", CultureInfo.InvariantCulture),
                ["history"] = History,
            };
            AtomicFile.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
            AtomicFile.Write(path, stream =>
            {
                stream.Write(Encoding.UTF8.GetBytes(o.ToString()));
                return 0;
            });
        }
    }
}
