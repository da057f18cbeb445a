using System.Management.Automation;
using BlockBackup.Engine.Configuration;
using BlockBackup.Engine.Policies;

namespace BlockBackup.Commands;

/// <summary>Base of the policy cmdlets: the node's policy store (BLOCKBACKUP_CONFIG_DIR or the platform default).</summary>
public abstract class PolicyCmdlet : EngineCmdlet
{
    protected PolicyStore Store() => new(NodeConfiguration.Directory());

    /// <summary>
    /// The stored policies whose names match <paramref name="pattern"/> (wildcards); a name without
    /// wildcards that is not a policy name (InvalidBackupPolicy) or matches none is an error.
    /// </summary>
    protected IEnumerable<string> Matching(PolicyStore store, string pattern)
    {
        if (!WildcardPattern.ContainsWildcardCharacters(pattern) && !Engine.Configuration.ConfigurationName.IsValid(pattern))
        {
            ForItem(() => PolicyStore.CheckedName(pattern));
            return [];
        }

        var wildcard = WildcardPattern.Get(pattern, WildcardOptions.IgnoreCase);
        var names = StoredNames(store).Where(wildcard.IsMatch).ToList();
        if (names.Count == 0 && !WildcardPattern.ContainsWildcardCharacters(pattern))
        {
            WriteError(ToErrorRecord(new Engine.Errors.BackupException(Engine.Errors.BackupErrorKind.NotFound, "BackupPolicyNotFound",
                $"There is no backup policy '{pattern}' in '{store.Directory}'.", pattern)));
        }

        return names;
    }

    /// <summary>The status of each of a policy's volumes now (its repository listed once; a repository that cannot be read is reported in each status).</summary>
    protected IReadOnlyList<PolicyVolumeStatus> StatusOf(PolicyStore store, string name, DateTimeOffset now)
    {
        var policy = store.Get(name);
        IReadOnlyList<Engine.BackupInfo>? backups = null;
        string? repositoryError = null;
        Engine.Repository.IBackupRepository? repository = null;
        using var client = policy.Repository.StartsWith(Engine.Rbd.RbdBackupPool.RepositoryPrefix, StringComparison.OrdinalIgnoreCase)
            ? new Engine.Rbd.RbdClient(new Engine.Rbd.RbdConnection(policy.CephConfig, policy.CephUser, policy.CephKeyring)) : null;
        try
        {
            // As a run finds it (a registered name looked up, never a directory of that name).
            repository = Engine.Repository.RepositoryFactory.Open(PolicyRepository.Resolve(policy), () => client!);
            backups = repository.List(includeIncomplete: false, StopToken);
        }
        catch (Engine.Errors.BackupException ex)
        {
            repositoryError = ex.Message;
        }

        try
        {
            var coverage = repository is null ? null : Engine.Operations.SampledVerification.Coverage(Engine.Operations.SampledVerification.StateFileFor(store.Directory, repository.Location))?.LastFullCoverageUtc;
            var declared = policy.Path.Where(p => !WildcardPattern.ContainsWildcardCharacters(p)).Concat(policy.RbdImage);
            return PolicyStatusReport.Build(policy, store.State(name), declared, backups, now, coverage, repositoryError);
        }
        finally
        {
            (repository as IDisposable)?.Dispose();
        }
    }

    /// <summary>Every stored policy's name; none, after a non-terminating error, when the store cannot be listed (an untrusted directory: ConfigurationNotTrusted).</summary>
    protected IReadOnlyList<string> StoredNames(PolicyStore store)
    {
        try
        {
            return store.Names();
        }
        catch (Engine.Errors.BackupException ex)
        {
            WriteError(ToErrorRecord(ex));
            return [];
        }
    }
}

/// <summary>The settings New-BackupPolicy and Set-BackupPolicy share; Set changes only those bound.</summary>
public abstract class PolicySettingsCmdlet : PolicyCmdlet
{
    /// <summary>Image files or block devices to back up; wildcards are expanded at each run.</summary>
    [Parameter]
    [SupportsWildcards]
    public string[]? Path { get; set; }

    /// <summary>RBD images (pool/image or pool/namespace/image) to back up.</summary>
    [Parameter]
    public string[]? RbdImage { get; set; }

    /// <summary>The cron expression saying when the policy is due, for example '0 2 * * *' (02:00 every day).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Schedule { get; set; }

    /// <summary>The schedule's time zone (IANA or Windows id); local time when not given.</summary>
    [Parameter]
    public string? TimeZone { get; set; }

    /// <summary>Make a full backup when the last full is at least this old.</summary>
    [Parameter]
    public TimeSpan? FullEvery { get; set; }

    /// <summary>Make a full backup once the chain has this many backups (the full included); 0: no such limit.</summary>
    [Parameter]
    [ValidateRange(0, 100000)]
    public int? MaxChainLength { get; set; }

    [Parameter] [ValidateRange(0, int.MaxValue)] public int KeepLast { get; set; }
    [Parameter] [ValidateRange(0, int.MaxValue)] public int KeepHourly { get; set; }
    [Parameter] [ValidateRange(0, int.MaxValue)] public int KeepDaily { get; set; }
    [Parameter] [ValidateRange(0, int.MaxValue)] public int KeepWeekly { get; set; }
    [Parameter] [ValidateRange(0, int.MaxValue)] public int KeepMonthly { get; set; }
    [Parameter] [ValidateRange(0, int.MaxValue)] public int KeepYearly { get; set; }
    [Parameter] public TimeSpan? KeepWithin { get; set; }

    [Parameter]
    [ValidateSet("zlib", "bz2", "zstd", "none", IgnoreCase = true)]
    public string? Compression { get; set; }

    /// <summary>Verify each new backup.</summary>
    [Parameter]
    public SwitchParameter Verify { get; set; }

    /// <summary>After each run, verify this share of the repository in rotation (as Test-VolumeBackup -SamplePercent); 0: none.</summary>
    [Parameter]
    [ValidateRange(0, 100)]
    public int? VerifyPercent { get; set; }

    /// <summary>
    /// Which of a volume's backups the retention rule may remove: Policy (default) only those
    /// this policy made, never backups made by hand, by Cinder or by another policy; Volume
    /// every backup of the volume in the repository.
    /// </summary>
    [Parameter]
    public RetainScope? RetainScope { get; set; }

    [Parameter] [ValidateNotNullOrEmpty] public string? CephConfig { get; set; }
    [Parameter] [ValidateNotNullOrEmpty] public string? CephUser { get; set; }
    [Parameter] [ValidateNotNullOrEmpty] public string? CephKeyring { get; set; }

    private bool Bound(string name) => MyInvocation.BoundParameters.ContainsKey(name);

    /// <summary>A repository location as stored: registered names, URLs and rbd: as given, paths absolute (the runner has no current location).</summary>
    protected string StoredLocation(string repository) => PolicyRepository.ForStorage(repository, ResolvePath);

    /// <summary>
    /// Warns about volumes named literally (no wildcards) that do not exist now: accepted (a
    /// device may appear later), but a typo would otherwise surface only at the first run.
    /// </summary>
    protected void WarnAboutMissingVolumes(BackupPolicy policy)
    {
        foreach (var path in policy.Path.Where(p => !WildcardPattern.ContainsWildcardCharacters(p) && !File.Exists(p) && !Directory.Exists(p)))
        {
            WriteWarning($"Policy '{policy.Name}': the volume '{path}' does not exist now; its backups fail (VolumeNotFound) until it does.");
        }
    }

    /// <summary>0 for a limit that the policy then does not have (so that Set-BackupPolicy, and DSC, can take one away).</summary>
    private static int? NoneIfZero(int? value) => value is 0 ? null : value;

    /// <summary><paramref name="policy"/> with every bound setting applied.</summary>
    protected BackupPolicy Apply(BackupPolicy policy) => policy with
    {
        Path = Bound(nameof(Path)) ? (Path ?? []).Select(ResolvePath).ToList() : policy.Path,
        RbdImage = Bound(nameof(RbdImage)) ? RbdImage ?? [] : policy.RbdImage,
        Schedule = Schedule ?? policy.Schedule,
        TimeZone = Bound(nameof(TimeZone)) ? TimeZone : policy.TimeZone,
        FullEvery = Bound(nameof(FullEvery)) ? FullEvery : policy.FullEvery,
        MaxChainLength = Bound(nameof(MaxChainLength)) ? NoneIfZero(MaxChainLength) : policy.MaxChainLength,
        KeepLast = Bound(nameof(KeepLast)) ? KeepLast : policy.KeepLast,
        KeepHourly = Bound(nameof(KeepHourly)) ? KeepHourly : policy.KeepHourly,
        KeepDaily = Bound(nameof(KeepDaily)) ? KeepDaily : policy.KeepDaily,
        KeepWeekly = Bound(nameof(KeepWeekly)) ? KeepWeekly : policy.KeepWeekly,
        KeepMonthly = Bound(nameof(KeepMonthly)) ? KeepMonthly : policy.KeepMonthly,
        KeepYearly = Bound(nameof(KeepYearly)) ? KeepYearly : policy.KeepYearly,
        KeepWithin = Bound(nameof(KeepWithin)) ? KeepWithin : policy.KeepWithin,
        Compression = Compression?.ToLowerInvariant() ?? policy.Compression,
        Verify = Bound(nameof(Verify)) ? Verify.IsPresent : policy.Verify,
        VerifyPercent = Bound(nameof(VerifyPercent)) ? NoneIfZero(VerifyPercent) : policy.VerifyPercent,
        RetainScope = RetainScope ?? policy.RetainScope,
        CephConfig = Bound(nameof(CephConfig)) ? ResolvePath(CephConfig!) : policy.CephConfig,
        CephUser = Bound(nameof(CephUser)) ? CephUser : policy.CephUser,
        CephKeyring = Bound(nameof(CephKeyring)) ? ResolvePath(CephKeyring!) : policy.CephKeyring,
    };
}
