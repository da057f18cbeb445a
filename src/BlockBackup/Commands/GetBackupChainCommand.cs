using System.Management.Automation;
using BlockBackup.Engine;

namespace BlockBackup.Commands;

/// <summary>
/// The chain a restore of a backup needs: the backups themselves, the full backup first, so the
/// chain pipes on as a whole (| Test-VolumeBackup, | Measure-Object StoredBytes -Sum);
/// -Summary emits one BackupChain object instead.
/// </summary>
[Cmdlet(VerbsCommon.Get, "BackupChain")]
[OutputType(typeof(BackupInfo), typeof(BackupChain))]
public sealed class GetBackupChainCommand : BackupItemCmdlet
{
    /// <summary>One object describing the chain (length, total stored bytes, the backups) instead of the backups.</summary>
    [Parameter]
    public SwitchParameter Summary { get; set; }

    protected override void ProcessRecord() => ForItem(() =>
    {
        var chain = OpenRepository(Repository).GetChain(BackupId);
        if (Summary)
        {
            WriteObject(chain);
            return;
        }

        foreach (var backup in chain.Backups)
        {
            WriteObject(backup);
        }
    });
}
