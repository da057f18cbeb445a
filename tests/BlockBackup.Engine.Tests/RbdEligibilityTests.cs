using BlockBackup.Engine.Operations;
using BlockBackup.Engine.Rbd;
using Xunit;

namespace BlockBackup.Engine.Tests;

public class RbdEligibilityTests
{
    // Every combination: the first failing rule in Cinder's order decides.
    [Theory]
    [InlineData(false, true, true, false, false, RestorePath.Full, RbdRestoreEligibility.BaseImageMissing)]
    [InlineData(false, false, false, true, true, RestorePath.Full, RbdRestoreEligibility.BaseImageMissing)]
    [InlineData(true, false, true, false, false, RestorePath.Full, RbdRestoreEligibility.NoRestorePoint)]
    [InlineData(true, false, false, true, true, RestorePath.Full, RbdRestoreEligibility.NoRestorePoint)]
    [InlineData(true, true, false, false, false, RestorePath.Full, RbdRestoreEligibility.TargetNotRbd)]
    [InlineData(true, true, false, true, true, RestorePath.Full, RbdRestoreEligibility.TargetNotRbd)]
    [InlineData(true, true, true, true, false, RestorePath.Full, RbdRestoreEligibility.TargetIsSourceVolume)]
    [InlineData(true, true, true, true, true, RestorePath.Full, RbdRestoreEligibility.TargetIsSourceVolume)]
    [InlineData(true, true, true, false, true, RestorePath.Full, RbdRestoreEligibility.TargetHasExtents)]
    [InlineData(true, true, true, false, false, RestorePath.Differential, RbdRestoreEligibility.DifferentialAllowed)]
    public void DecisionFollowsCindersOrder(bool baseExists, bool restorePoint, bool targetIsRbd, bool targetIsSource, bool targetHasExtents, RestorePath path, string rule)
    {
        var decision = RbdRestoreEligibility.Decide(new RbdRestoreFacts("volume-x.backup.y", baseExists, restorePoint ? "backup.y.snap.1.5" : null, targetIsRbd, targetIsSource, targetHasExtents));
        Assert.Equal(path, decision.Path);
        Assert.Equal(rule, decision.Rule);
        Assert.False(string.IsNullOrWhiteSpace(decision.Reason));
        Assert.Equal(restorePoint && baseExists ? "backup.y.snap.1.5" : null, decision.RestorePoint);
    }

    [Fact]
    public void AFailedDifferentialTransferFallsBackToAFullCopy()
    {
        var allowed = RbdRestoreEligibility.Decide(new RbdRestoreFacts("b", true, "s", true, false, false));
        var fallback = RbdRestoreEligibility.AfterDifferentialFailure(allowed, "import-diff exit 22");
        Assert.Equal(RestorePath.Full, fallback.Path);
        Assert.Equal(RbdRestoreEligibility.DifferentialFailed, fallback.Rule);
        Assert.Contains("import-diff exit 22", fallback.Reason, StringComparison.Ordinal);
        Assert.Equal("s", fallback.RestorePoint);
    }
}
