using System.Management.Automation;
using BlockBackup.Engine;
using BlockBackup.Engine.Compression;
using BlockBackup.Engine.Operations;

namespace BlockBackup.Commands;

/// <summary>Backs up a raw image file or block device into a repository (full or incremental).</summary>
[Cmdlet(VerbsCommon.New, "VolumeBackup", DefaultParameterSetName = FullSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(BackupInfo))]
public sealed class NewVolumeBackupCommand : RepositoryCmdlet
{
    private const string FullSet = "Full";
    private const string IncrementalSet = "Incremental";
    private const string RbdSet = "Rbd";
    private const string RbdIncrementalSet = "RbdIncremental";

    /// <summary>The image file or block device to back up.</summary>
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = FullSet, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Parameter(Mandatory = true, Position = 0, ParameterSetName = IncrementalSet, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName", "Source")]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = null!;

    /// <summary>The RBD image to back up (pool/image or pool/namespace/image): into an RBD backup pool (-Repository rbd:pool) or a file/NFS repository.</summary>
    [Parameter(Mandatory = true, ParameterSetName = RbdSet, ValueFromPipelineByPropertyName = true)]
    [Parameter(Mandatory = true, ParameterSetName = RbdIncrementalSet, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string RbdImage { get; set; } = null!;

    /// <summary>Backup snapshots to keep on the RBD source, oldest removed first; 0 (default) keeps all.</summary>
    [Parameter(ParameterSetName = RbdSet)]
    [Parameter(ParameterSetName = RbdIncrementalSet)]
    [ValidateRange(0, 10000)]
    public int KeepSourceSnapshots { get; set; }

    /// <summary>The repository directory (local or an NFS mount); created when missing.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    public string Repository { get; set; } = null!;

    [Parameter]
    public string? Name { get; set; }

    [Parameter]
    public string? Description { get; set; }

    /// <summary>Store only what changed since the latest available backup of the volume (or -Parent).</summary>
    [Parameter(Mandatory = true, ParameterSetName = IncrementalSet)]
    [Parameter(Mandatory = true, ParameterSetName = RbdIncrementalSet)]
    public SwitchParameter Incremental { get; set; }

    /// <summary>The backup to base the incremental on, instead of the volume's latest.</summary>
    [Parameter(ParameterSetName = IncrementalSet)]
    [Parameter(ParameterSetName = RbdIncrementalSet)]
    [ArgumentCompleter(typeof(BackupIdCompleter))]
    public Guid? Parent { get; set; }

    [Parameter(ParameterSetName = FullSet)]
    [Parameter(ParameterSetName = IncrementalSet)]
    [Parameter(ParameterSetName = RbdSet)]
    [Parameter(ParameterSetName = RbdIncrementalSet)]
    [ValidateSet("zlib", "bz2", "zstd", "none", IgnoreCase = true)]
    public string Compression { get; set; } = "zlib";

    /// <summary>zlib: 1 (default, fastest), 6 or 9; zstd: -7..19 (default 1).</summary>
    [Parameter(ParameterSetName = FullSet)]
    [Parameter(ParameterSetName = IncrementalSet)]
    [Parameter(ParameterSetName = RbdSet)]
    [Parameter(ParameterSetName = RbdIncrementalSet)]
    [ValidateRange(-7, 19)]
    public int? CompressionLevel { get; set; }

    /// <summary>The volume's id; by default derived from the resolved path, so every backup of a path shares it.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    public Guid? VolumeId { get; set; }

    /// <summary>Object size in bytes (a multiple of 32 KiB, at most 256 MiB; default 8 MiB).</summary>
    [Parameter(ParameterSetName = FullSet)]
    [Parameter(ParameterSetName = IncrementalSet)]
    [Parameter(ParameterSetName = RbdSet)]
    [Parameter(ParameterSetName = RbdIncrementalSet)]
    [ValidateRange(32768L, 256L << 20)] // both long: PowerShell requires min and max of one type
    public long ObjectSize { get; set; } = BackupRequest.DefaultObjectSize;

    /// <summary>Back up a volume that is in use when no snapshot can be taken (crash-consistent at best).</summary>
    [Parameter(ParameterSetName = FullSet)]
    [Parameter(ParameterSetName = IncrementalSet)]
    public SwitchParameter Force { get; set; }

    /// <summary>Do not take a reflink clone or LVM snapshot even where one is possible.</summary>
    [Parameter(ParameterSetName = FullSet)]
    [Parameter(ParameterSetName = IncrementalSet)]
    public SwitchParameter NoSnapshot { get; set; }

    /// <summary>Seconds to wait when another operation holds the volume's repository lock.</summary>
    [Parameter(ParameterSetName = FullSet)]
    [Parameter(ParameterSetName = IncrementalSet)]
    [Parameter(ParameterSetName = RbdSet)]
    [Parameter(ParameterSetName = RbdIncrementalSet)]
    [ValidateRange(0, 86400)]
    public int LockTimeoutSeconds { get; set; } = 30;

    protected override void ProcessRecord()
    {
        if (ParameterSetName is RbdSet or RbdIncrementalSet)
        {
            BackupRbdImage();
            return;
        }

        var source = ResolvePath(Path);
        var kind = Incremental ? "incremental" : "full";
        if (!ShouldProcess(source, $"Create a {kind} backup in repository '{ResolvePath(Repository)}'"))
        {
            return;
        }

        var repository = OpenRepository(Repository, create: true);
        repository.LockTimeout = TimeSpan.FromSeconds(LockTimeoutSeconds);
        CompressionNames.TryParse(Compression, out var compression);
        ForItem(() =>
        {
            var request = new BackupRequest
            {
                SourcePath = source,
                VolumeId = VolumeId,
                Name = Name,
                Description = Description,
                Incremental = Incremental,
                ParentId = Parent,
                Compression = compression,
                CompressionLevel = CompressionLevel,
                Force = Force,
                ObjectSize = ObjectSize,
                UseSnapshot = !NoSnapshot,
            };
            var result = RunWithProgress($"Backing up {source}", (progress, token) => BackupOperation.Run(repository, request, progress, token));
            WriteVerbose($"Backup {result.Backup.Id}: {result.ConsistencyDetail}; read {Units.Size(result.BytesRead)}, backed up {Units.Size(result.BytesBackedUp)}, stored {Units.Size(result.Backup.StoredBytes)} in {result.Duration.TotalSeconds:F1} s.");
            WriteObject(result.Backup);
        });
    }

    private void BackupRbdImage()
    {
        var source = ParseImage(RbdImage);
        if (!ShouldProcess(source.Spec, $"Create a{(Incremental ? "n incremental" : " full")} backup in repository '{(IsRbd(Repository) ? Repository : ResolvePath(Repository))}'"))
        {
            return;
        }

        if (!IsRbd(Repository))
        {
            // RBD image → file/NFS repository in Cinder's chunked format, differential through export-diff.
            var repository = OpenRepository(Repository, create: true);
            repository.LockTimeout = TimeSpan.FromSeconds(LockTimeoutSeconds);
            CompressionNames.TryParse(Compression, out var compression);
            ForItem(() =>
            {
                var request = new BackupRequest
                {
                    SourcePath = source.Spec, VolumeId = VolumeId, Name = Name, Description = Description, Incremental = Incremental,
                    ParentId = Parent, Compression = compression, CompressionLevel = CompressionLevel, ObjectSize = ObjectSize,
                };
                var result = RunWithProgress($"Backing up {source}", (progress, token) =>
                    Engine.Rbd.RbdFileBackupOperation.Run(repository, RbdClient(), source, request, KeepSourceSnapshots, progress, token));
                WriteVerbose($"Backup {result.Backup.Id}: {result.ConsistencyDetail}; read {Units.Size(result.BytesRead)}, stored {Units.Size(result.Backup.StoredBytes)} in {result.Duration.TotalSeconds:F1} s.");
                WriteObject(result.Backup);
            });
            return;
        }

        var pool = OpenPool(Repository);
        ForItem(() =>
        {
            var request = new Engine.Rbd.RbdBackupRequest
            {
                Source = source,
                VolumeId = VolumeId,
                Name = Name,
                Description = Description,
                Incremental = Incremental,
                ParentId = Parent,
                KeepSourceSnapshots = KeepSourceSnapshots,
            };
            var result = RunWithProgress($"Backing up {source}", (progress, token) => Engine.Rbd.RbdBackupOperation.Run(pool, request, progress, token));
            WriteVerbose($"Backup {result.Backup.Id}: {result.Reason}; moved {Units.Size(result.DiffBytes)} of diff stream in {result.Duration.TotalSeconds:F1} s (source snapshot {result.SourceSnapshot}).");
            WriteObject(result.Backup);
        });
    }
}
