using System.Management.Automation;
using BlockBackup.Engine;
using BlockBackup.Engine.Compression;
using BlockBackup.Engine.Consistency;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Operations;
using BlockBackup.Engine.Rbd;
using BlockBackup.Engine.Repository;

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

    /// <summary>The repository: a directory (local or an NFS mount; created when missing) or rbd:&lt;pool&gt;.</summary>
    [Parameter(Mandatory = true, Position = 1)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(RepositoryCompleter))]
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

    /// <summary>zlib: 1 (default, fastest), 6 or 9; bz2: 1-9 (default 9); zstd: -7..19 (default 1); none takes no level.</summary>
    [Parameter(ParameterSetName = FullSet)]
    [Parameter(ParameterSetName = IncrementalSet)]
    [Parameter(ParameterSetName = RbdSet)]
    [Parameter(ParameterSetName = RbdIncrementalSet)]
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
        var rbd = ParameterSetName is RbdSet or RbdIncrementalSet;
        var kind = Incremental ? "an incremental" : "a full";
        ForItem(() =>
        {
            var compression = CompressionNames.Parse(Compression, "-Compression");
            CompressionNames.ValidateLevel(compression, CompressionLevel);
            var location = ParseLocation(Repository);
            var source = rbd ? ParseImage(RbdImage).Spec : ResolvePath(Path);
            if (!ShouldProcess(source, $"Create {kind} backup in repository '{location.Value}'"))
            {
                return;
            }

            // A backup refused before it wrote anything (no parent, missing or busy volume) leaves
            // no repository directory behind that this call created.
            var created = location.Kind == RepositoryKind.File && !Directory.Exists(location.Value);
            try
            {
                var repository = OpenRepository(Repository, create: true, usesCeph: rbd);
                WriteObject(rbd ? BackupRbdImage(repository, ParseImage(RbdImage), compression) : BackupFile(repository, source, compression));
            }
            catch when (created)
            {
                RemoveIfEmpty(location.Value);
                ForgetRepository(Repository);
                throw;
            }
        });
    }

    private BackupInfo BackupFile(IBackupRepository target, string source, CompressionAlgorithm compression)
    {
        if (target is not IChunkedRepository repository)
        {
            throw new BackupException(BackupErrorKind.NotSupported, "SourceNotSupportedByRepository",
                $"'{target.Location}' is a Ceph backup pool, which holds backups of RBD images only (-RbdImage); back up the file or device '{source}' into a directory repository.", source);
        }

        repository.LockTimeout = TimeSpan.FromSeconds(LockTimeoutSeconds);
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
            ObjectSize = ChosenObjectSize(repository),
            UseSnapshot = !NoSnapshot,
        };
        var result = RunWithProgress($"Backing up {source}", (progress, log, token) => BackupOperation.Run(repository, request with { Log = log }, progress, token));
        Report(result.Backup, result.Parent, result.ConsistencyDetail);
        if (result.Consistency == ConsistencyMethod.DirectForced)
        {
            WriteWarning($"'{source}' was in use and no snapshot could be taken: it was read directly because of -Force, so backup {result.Backup.Id} is crash-consistent at best.");
        }

        WriteVerbose($"Backup {result.Backup.Id}: read {Units.Size(result.BytesRead)}, backed up {Units.Size(result.BytesBackedUp)}, stored {Units.Size(result.Backup.StoredBytes)} in {result.Duration.TotalSeconds:F1} s.");
        return result.Backup;
    }

    /// <summary>-ObjectSize when given, else the repository kind's default (as Cinder's drivers differ: posix 8 MiB here, s3/swift 50 MiB).</summary>
    private long ChosenObjectSize(IChunkedRepository repository) =>
        MyInvocation.BoundParameters.ContainsKey(nameof(ObjectSize)) ? ObjectSize : repository.DefaultObjectSize;

    private BackupInfo BackupRbdImage(IBackupRepository target, RbdImageRef source, CompressionAlgorithm compression)
    {
        if (target is IChunkedRepository repository)
        {
            // RBD image → file/NFS repository in Cinder's chunked format; only changed objects are read.
            repository.LockTimeout = TimeSpan.FromSeconds(LockTimeoutSeconds);
            var request = new BackupRequest
            {
                SourcePath = source.Spec, VolumeId = VolumeId, Name = Name, Description = Description, Incremental = Incremental,
                ParentId = Parent, Compression = compression, CompressionLevel = CompressionLevel, ObjectSize = ChosenObjectSize(repository),
            };
            var result = RunWithProgress($"Backing up {source}", (progress, log, token) =>
                Engine.Rbd.RbdFileBackupOperation.Run(repository, RbdClient(), source, request with { Log = log }, KeepSourceSnapshots, progress, token));
            Report(result.Backup, result.Parent, result.ConsistencyDetail);
            WriteVerbose($"Backup {result.Backup.Id}: read {Units.Size(result.BytesRead)}, stored {Units.Size(result.Backup.StoredBytes)} in {result.Duration.TotalSeconds:F1} s.");
            return result.Backup;
        }

        var pool = (Engine.Rbd.RbdBackupPool)target;
        var rbdResult = RunWithProgress($"Backing up {source}", (progress, log, token) => Engine.Rbd.RbdBackupOperation.Run(pool, new Engine.Rbd.RbdBackupRequest
        {
            Source = source,
            VolumeId = VolumeId,
            Name = Name,
            Description = Description,
            Incremental = Incremental,
            ParentId = Parent,
            KeepSourceSnapshots = KeepSourceSnapshots,
            Log = log,
        }, progress, token));
        Report(rbdResult.Backup, rbdResult.Parent, $"{rbdResult.Reason}; source snapshot {rbdResult.SourceSnapshot}");
        WriteVerbose($"Backup {rbdResult.Backup.Id}: moved {Units.Size(rbdResult.DiffBytes)} of changed extents in {rbdResult.Duration.TotalSeconds:F1} s.");
        return rbdResult.Backup;
    }

    /// <summary>-Verbose: the parent the incremental was based on, and how the point-in-time view was taken.</summary>
    private void Report(BackupInfo backup, BackupInfo? parent, string method)
    {
        WriteVerbose(parent is null
            ? $"Backup {backup.Id} is a full backup."
            : $"Backup {backup.Id} is an incremental of {parent.Id} ({parent.Name ?? "unnamed"}, {parent.CreatedUtc.ToLocalTime():yyyy-MM-dd HH:mm:ss}).");
        WriteVerbose($"Point-in-time view: {method}.");
    }

    /// <summary>
    /// Removes a repository directory this call created, if nothing but empty directories is in
    /// it. The backup's work has ended by now (RunWithProgress waits for it even when the pipeline
    /// is stopped), so its lock and in-flight record are already gone.
    /// </summary>
    private static void RemoveIfEmpty(string root)
    {
        try
        {
            foreach (var dir in Directory.EnumerateDirectories(root, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = FileAttributes.ReparsePoint }).OrderByDescending(d => d.Length))
            {
                if (!Directory.EnumerateFileSystemEntries(dir).Any())
                {
                    Directory.Delete(dir);
                }
            }

            if (!Directory.EnumerateFileSystemEntries(root).Any())
            {
                Directory.Delete(root);
            }
        }
        catch (IOException)
        {
            // Best effort: the original failure is what the user needs to see.
        }
        catch (UnauthorizedAccessException)
        {
            // Likewise.
        }
    }
}
