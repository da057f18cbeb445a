using System.Management.Automation;
using BlockBackup.Engine;
using BlockBackup.Engine.Compression;
using BlockBackup.Engine.Operations;

namespace BlockBackup.Commands;

/// <summary>Backs up a raw image file or block device into a repository (full or incremental).</summary>
[Cmdlet(VerbsCommon.New, "VolumeBackup", DefaultParameterSetName = FullSet, SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Low)]
[OutputType(typeof(BackupInfo))]
public sealed class NewVolumeBackupCommand : EngineCmdlet
{
    private const string FullSet = "Full";
    private const string IncrementalSet = "Incremental";

    /// <summary>The image file or block device to back up.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("FullName", "Source")]
    [ValidateNotNullOrEmpty]
    public string Path { get; set; } = null!;

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
    public SwitchParameter Incremental { get; set; }

    /// <summary>The backup to base the incremental on, instead of the volume's latest.</summary>
    [Parameter(ParameterSetName = IncrementalSet)]
    [ArgumentCompleter(typeof(BackupIdCompleter))]
    public Guid? Parent { get; set; }

    [Parameter]
    [ValidateSet("zlib", "bz2", "zstd", "none", IgnoreCase = true)]
    public string Compression { get; set; } = "zlib";

    /// <summary>zlib: 1 (default, fastest), 6 or 9; zstd: -7..19 (default 1).</summary>
    [Parameter]
    [ValidateRange(-7, 19)]
    public int? CompressionLevel { get; set; }

    /// <summary>The volume's id; by default derived from the resolved path, so every backup of a path shares it.</summary>
    [Parameter(ValueFromPipelineByPropertyName = true)]
    public Guid? VolumeId { get; set; }

    /// <summary>Object size in bytes (a multiple of 32 KiB, at most 256 MiB; default 8 MiB).</summary>
    [Parameter]
    [ValidateRange(32768L, 256L << 20)] // both long: PowerShell requires min and max of one type
    public long ObjectSize { get; set; } = BackupRequest.DefaultObjectSize;

    /// <summary>Back up a volume that is in use when no snapshot can be taken (crash-consistent at best).</summary>
    [Parameter]
    public SwitchParameter Force { get; set; }

    /// <summary>Do not take a reflink clone or LVM snapshot even where one is possible.</summary>
    [Parameter]
    public SwitchParameter NoSnapshot { get; set; }

    /// <summary>Seconds to wait when another operation holds the volume's repository lock.</summary>
    [Parameter]
    [ValidateRange(0, 86400)]
    public int LockTimeoutSeconds { get; set; } = 30;

    protected override void ProcessRecord()
    {
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
}
