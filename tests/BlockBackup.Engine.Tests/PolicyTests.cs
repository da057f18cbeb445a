using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Policies;
using Xunit;

namespace BlockBackup.Engine.Tests;

public class PolicyTests
{
    private static readonly DateTime Day0 = new(2026, 11, 1, 2, 0, 0, DateTimeKind.Utc);

    private static BackupPolicy Policy(string schedule = "0 2 * * *", TimeSpan? fullEvery = null, int? maxChain = null, string? zone = "UTC") => new()
    {
        Name = "p", Path = ["/x.img"], Repository = "/r", Schedule = schedule, TimeZone = zone, FullEvery = fullEvery, MaxChainLength = maxChain, KeepLast = 3,
        CreatedUtc = new DateTimeOffset(Day0.AddHours(-1)),
    };

    private static BackupInfo Backup(int day, Guid? parent = null, long size = 4096, BackupStatus status = BackupStatus.Available) => new()
    {
        Id = Guid.NewGuid(), VolumeId = Guid.Empty, CreatedUtc = Day0.AddDays(day), ParentId = parent, Status = status, VolumeSize = size,
        WrittenBy = "BlockBackup", Repository = "/r", Container = "c", Prefix = $"p{day}",
    };

    [Fact]
    public void CadenceMakesAFullWhenThereIsNoParentOrTheVolumeGrew()
    {
        var now = new DateTimeOffset(Day0.AddDays(1));
        Assert.True(CadencePlanner.Decide([], 4096, Policy(), now) is { Full: true, Reason: var r } && r.Contains("no earlier backup", StringComparison.Ordinal));
        Assert.True(CadencePlanner.Decide([Backup(0, status: BackupStatus.Damaged)], 4096, Policy(), now).Full);
        var grew = CadencePlanner.Decide([Backup(0)], 8192, Policy(), now);
        Assert.True(grew.Full);
        Assert.Contains("grew from 4.00 KiB to 8.00 KiB", grew.Reason, StringComparison.Ordinal);
        Assert.False(CadencePlanner.Decide([Backup(0)], 4096, Policy(), now).Full);
    }

    [Fact]
    public void CadenceMakesAFullWhenFullEveryElapsedOrTheChainIsLongEnough()
    {
        var full = Backup(0);
        var chain = new List<BackupInfo> { full };
        for (var day = 1; day <= 6; day++)
        {
            chain.Add(Backup(day, chain[^1].Id));
        }

        var week = TimeSpan.FromDays(7);
        Assert.False(CadencePlanner.Decide(chain, 4096, Policy(fullEvery: week), new DateTimeOffset(Day0.AddDays(6.9))).Full);
        // A nightly run that starts a few seconds earlier than last week's full still makes the weekly full.
        Assert.True(CadencePlanner.Decide(chain, 4096, Policy(fullEvery: week), new DateTimeOffset(Day0.AddDays(7).AddSeconds(-5))).Full);
        var due = CadencePlanner.Decide(chain, 4096, Policy(fullEvery: week), new DateTimeOffset(Day0.AddDays(7)));
        Assert.True(due.Full);
        Assert.Contains("FullEvery", due.Reason, StringComparison.Ordinal);
        Assert.False(CadencePlanner.Decide(chain, 4096, Policy(maxChain: 8), new DateTimeOffset(Day0.AddDays(7))).Full);
        var longChain = CadencePlanner.Decide(chain, 4096, Policy(maxChain: 7), new DateTimeOffset(Day0.AddDays(7)));
        Assert.True(longChain.Full);
        Assert.Contains("7 backup(s) (MaxChainLength 7)", longChain.Reason, StringComparison.Ordinal);
        Assert.Contains("chain length 8", CadencePlanner.Decide(chain, 4096, Policy(maxChain: 8), new DateTimeOffset(Day0.AddDays(7))).Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void APolicyIsDueOnceAfterDowntimeNotOncePerMissedOccurrence()
    {
        var policy = Policy();
        var lastRun = new DateTimeOffset(Day0);
        Assert.False(ScheduleEvaluator.IsDue(policy, lastRun, policy.CreatedUtc, new DateTimeOffset(Day0.AddHours(23))));
        Assert.True(ScheduleEvaluator.IsDue(policy, lastRun, policy.CreatedUtc, new DateTimeOffset(Day0.AddDays(1))));
        // Off for five days: due now, and after that one run, not again until the next 02:00.
        var back = new DateTimeOffset(Day0.AddDays(5).AddHours(7));
        Assert.True(ScheduleEvaluator.IsDue(policy, lastRun, policy.CreatedUtc, back));
        Assert.False(ScheduleEvaluator.IsDue(policy, back, policy.CreatedUtc, back.AddMinutes(5)));
        Assert.Equal(new DateTimeOffset(Day0.AddDays(6)), ScheduleEvaluator.Next(policy, back));
        // Never run: due at the first occurrence after it was created.
        Assert.True(ScheduleEvaluator.IsDue(policy, null, policy.CreatedUtc, new DateTimeOffset(Day0)));
        Assert.False(ScheduleEvaluator.IsDue(policy, null, policy.CreatedUtc, new DateTimeOffset(Day0.AddMinutes(-1))));
    }

    [Fact]
    public void DaylightSavingChangesNeitherSkipNorDoubleARun()
    {
        // Europe/Berlin: 2026-03-29 02:00 -> 03:00 (02:30 does not exist), 2026-10-25 03:00 -> 02:00 (02:30 happens twice).
        var policy = Policy("30 2 * * *", zone: "Europe/Berlin");
        var spring = ScheduleEvaluator.Next(policy, new DateTimeOffset(2026, 3, 28, 12, 0, 0, TimeSpan.Zero))!.Value;
        Assert.Equal(new DateTimeOffset(2026, 3, 29, 1, 0, 0, TimeSpan.Zero), spring.ToUniversalTime());   // runs at the change (03:00 CEST)
        var autumn = ScheduleEvaluator.Next(policy, new DateTimeOffset(2026, 10, 24, 12, 0, 0, TimeSpan.Zero))!.Value;
        Assert.Equal(new DateTimeOffset(2026, 10, 25, 0, 30, 0, TimeSpan.Zero), autumn.ToUniversalTime());  // the first 02:30 (CEST)
        Assert.False(ScheduleEvaluator.IsDue(policy, autumn, policy.CreatedUtc, autumn.AddHours(1.5)));       // not the repeated 02:30 (CET)
        Assert.Equal(new DateTimeOffset(2026, 10, 26, 1, 30, 0, TimeSpan.Zero), ScheduleEvaluator.Next(policy, autumn)!.Value.ToUniversalTime());
    }

    [Theory]
    [InlineData("{\"name\": \"p\", \"path\": [\"/x\"], \"repository\": \"/r\", \"schedule\": \"every night\", \"keepLast\": 1}", "Schedule")]
    [InlineData("{\"name\": \"p\", \"path\": [\"/x\"], \"repository\": \"/r\", \"schedule\": \"0 2 * * *\"", "not valid JSON")]
    [InlineData("{\"name\": \"p\", \"path\": [\"/x\"], \"repository\": \"/r\", \"schedule\": \"0 2 * * *\"}", "Keep*")]
    [InlineData("{\"name\": \"p\", \"path\": [\"/x\"], \"repository\": \"/r\", \"schedule\": \"0 2 * * *\", \"keepLast\": 1, \"keepForever\": true}", "keepForever")]
    [InlineData("{\"name\": \"p\", \"path\": [\"/x\"], \"repository\": \"/r\", \"schedule\": \"0 2 * * *\", \"keepLast\": \"many\"}", "keepLast")]
    [InlineData("{\"name\": \"p\", \"path\": [\"/x\"], \"repository\": \"/r\", \"schedule\": \"0 2 * * *\", \"keepLast\": 1, \"fullEvery\": \"weekly\"}", "fullEvery")]
    [InlineData("{\"name\": \"q\", \"path\": [\"/x\"], \"repository\": \"/r\", \"schedule\": \"0 2 * * *\", \"keepLast\": 1}", "differs from the file's name")]
    public void AHandEditedPolicyFileIsRefusedNamingThePolicyAndTheField(string json, string field)
    {
        using var s = new Scratch();
        var store = new PolicyStore(s.PathOf("config"));
        Directory.CreateDirectory(Path.GetDirectoryName(store.PolicyPath("p"))!);
        File.WriteAllText(store.PolicyPath("p"), json);
        var ex = Assert.Throws<BackupException>(() => store.Get("p"));
        Assert.Equal("InvalidBackupPolicy", ex.ErrorId);
        Assert.Contains("Backup policy 'p'", ex.Message, StringComparison.Ordinal);
        Assert.Contains(field, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void APolicyRoundTripsThroughTheStore()
    {
        using var s = new Scratch();
        var store = new PolicyStore(s.PathOf("config"));
        var policy = Policy(fullEvery: TimeSpan.FromDays(7), maxChain: 10) with { KeepDaily = 7, KeepWithin = TimeSpan.FromHours(36), Verify = true, VerifyPercent = 5 };
        store.Save(policy, replace: false);
        Assert.Equal("BackupPolicyExists", Assert.Throws<BackupException>(() => store.Save(policy, replace: false)).ErrorId);
        var back = store.Get("p");
        Assert.Equal(PolicyStore.ToJson(policy).ToString(), PolicyStore.ToJson(back).ToString());
        Assert.Equal(["p"], store.Names());
    }

    /// <summary>The store's own path builders refuse a name that is not a policy name, so no caller can reach a file outside it.</summary>
    [Theory]
    [InlineData("../outside")]
    [InlineData("../policies/keep")]
    [InlineData("/tmp/rooted")]
    [InlineData("..")]
    [InlineData("CON")]
    [InlineData("a\\b")]
    public void TheStoreBuildsNoPathFromANameThatIsNotAPolicyName(string name)
    {
        using var s = new Scratch();
        var store = new PolicyStore(s.PathOf("config"));
        store.Save(Policy() with { Name = "keep" }, replace: false);
        File.WriteAllText(s.PathOf("config/outside.json"), "{}");
        File.WriteAllText(s.PathOf("config/outside.lock"), "");
        var before = Directory.GetFiles(s.PathOf("."), "*", SearchOption.AllDirectories).Order().ToList();
        foreach (var call in new Action[]
                 {
                     () => store.PolicyPath(name), () => store.StatePath(name), () => store.LockPath(name), () => store.Get(name), () => store.Remove(name),
                     () => store.State(name), () => store.SaveState(name, new PolicyState(DateTimeOffset.UtcNow, [])), () => store.TryLock(name)?.Dispose(),
                 })
        {
            Assert.Equal("InvalidBackupPolicy", Assert.Throws<BackupException>(call).ErrorId);
        }

        Assert.Equal(before, Directory.GetFiles(s.PathOf("."), "*", SearchOption.AllDirectories).Order().ToList());
    }
}
