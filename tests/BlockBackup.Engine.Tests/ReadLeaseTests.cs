using System.Text;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Operations;
using Xunit;

namespace BlockBackup.Engine.Tests;

/// <summary>Restores and verifications claim what they read; removal in a file repository respects the claim.</summary>
public class ReadLeaseTests
{
    [Fact]
    public async Task ARemovalDuringARestoreIsRefusedClearlyAndTheRestoreCompletes()
    {
        using var s = new Scratch();
        var volume = s.MixedVolume("vol.img", 6 << 20, seed: 17);
        var full = s.Backup(volume).Backup;
        Scratch.Scribble(volume, seed: 18);
        var incremental = s.Backup(volume, incremental: true).Backup;

        // While a restore of the incremental reads the chain, neither the chain's full backup nor the incremental can go.
        Exception? refused = null;
        var restore = Task.Run(() => RestoreOperation.Run(s.Repository, new RestoreRequest { BackupId = incremental.Id, TargetPath = s.PathOf("out.img") },
            new Progress(() =>
            {
                refused ??= Record.Exception(() => s.Repository.Remove(full.Id, includeDependents: true));
            })));
        var result = await restore;
        var error = Assert.IsType<BackupException>(refused);
        Assert.Equal("BackupInUse", error.ErrorId);
        Assert.Contains("restore by process", error.Message, StringComparison.Ordinal);
        Assert.Equal(Scratch.Sha(volume), Scratch.Sha(result.TargetPath));

        // Once it is done, the removal goes through and the claim is gone.
        Assert.Equal([incremental.Id, full.Id], s.Repository.Remove(full.Id, includeDependents: true).Select(b => b.Id));
        Assert.False(Directory.Exists(Path.Combine(s.RepoPath, ".blockbackup", "readers")) && Directory.EnumerateFileSystemEntries(Path.Combine(s.RepoPath, ".blockbackup", "readers"), "*", SearchOption.AllDirectories).Any(File.Exists));
    }

    [Fact]
    public void ARestoreWhoseClaimCannotBeWrittenStillWorks()
    {
        // Reading must work where nothing can be written (a read-only share): here the claims'
        // directory cannot be created because a file stands where it would go.
        using var s = new Scratch();
        var volume = s.MixedVolume("vol.img", 1 << 20, seed: 19);
        var backup = s.Backup(volume).Backup;
        File.WriteAllText(Path.Combine(s.RepoPath, ".blockbackup", "readers"), "not a directory");
        s.Restore(backup.Id, s.PathOf("out.img"));
        Assert.Equal(Scratch.Sha(volume), Scratch.Sha(s.PathOf("out.img")));
        Assert.True(VerifyOperation.Run(s.Repository, backup.Id, includeChain: true).IsValid);
    }

    /// <summary>Calls back on the first progress report of the restoring phase (objects are being read).</summary>
    private sealed class Progress(Action onRestoring) : IProgress<OperationProgress>
    {
        public void Report(OperationProgress value)
        {
            if (value.Phase == OperationPhase.Restoring)
            {
                onRestoring();
            }
        }
    }
}
