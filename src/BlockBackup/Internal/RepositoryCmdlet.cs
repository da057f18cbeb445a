using System.Management.Automation;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Rbd;
using BlockBackup.Engine.Repository;

namespace BlockBackup.Commands;

/// <summary>
/// Base of the cmdlets that work on a repository of any kind (a directory in Cinder's chunked
/// format, or rbd:&lt;pool&gt;), opened through <see cref="RepositoryFactory"/>. Carries the Ceph
/// connection parameters; without them Ceph's client defaults apply (CEPH_CONF,
/// /etc/ceph/ceph.conf, client.admin). One cluster connection, and one handle per repository,
/// serve every record of the pipeline; the connection is closed when PowerShell disposes the cmdlet.
/// </summary>
public abstract class RepositoryCmdlet : EngineCmdlet
{
    private readonly Dictionary<string, IBackupRepository> opened = new(StringComparer.Ordinal);
    private RbdClient? rbdClient;

    /// <summary>The ceph.conf to use for RBD images and pools.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? CephConfig { get; set; }

    /// <summary>The Ceph client id (as in client.&lt;id&gt;), e.g. cinder-backup.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? CephUser { get; set; }

    /// <summary>The keyring file holding the client's key (the key itself is never passed on a command line).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? CephKeyring { get; set; }

    private bool CephParametersBound =>
        MyInvocation.BoundParameters.ContainsKey(nameof(CephConfig)) || MyInvocation.BoundParameters.ContainsKey(nameof(CephUser)) || MyInvocation.BoundParameters.ContainsKey(nameof(CephKeyring));

    protected RbdClient RbdClient() =>
        rbdClient ??= new(new RbdConnection(CephConfig is null ? null : ResolvePath(CephConfig), CephUser, CephKeyring is null ? null : ResolvePath(CephKeyring)));

    /// <summary>Parses a repository location as the user wrote it (paths against the current PowerShell location).</summary>
    protected RepositoryLocation ParseLocation(string location) => RepositoryLocation.Parse(location, ResolvePath);

    /// <summary>
    /// Opens (once per pipeline) the repository at <paramref name="location"/>. Throws
    /// BackupException, so callers open it inside <see cref="EngineCmdlet.ForItem"/>: a bad
    /// repository that came from the pipeline fails that item, not the pipeline.
    /// </summary>
    /// <param name="location">As the user wrote it.</param>
    /// <param name="create">Create a missing directory repository (backups only).</param>
    /// <param name="usesCeph">Whether something else in the call (an RBD source or target) needs the Ceph parameters.</param>
    protected IBackupRepository OpenRepository(string location, bool create = false, bool usesCeph = false)
    {
        var parsed = ParseLocation(location);
        if (parsed.Kind != RepositoryKind.RbdPool && !usesCeph && CephParametersBound)
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "CephParameterNotApplicable",
                $"-CephConfig, -CephUser and -CephKeyring apply to rbd:<pool> repositories and RBD images; '{parsed.Value}' is a {parsed.Kind} repository. Remove them.", location);
        }

        var key = $"{parsed.Kind}:{parsed.Value}";
        if (!opened.TryGetValue(key, out var repository))
        {
            repository = RepositoryFactory.Open(parsed, RbdClient, create);
            opened[key] = repository;
        }

        return repository;
    }

    /// <summary>Drops the handle of a repository (its directory was removed), so the next item opens it afresh.</summary>
    protected void ForgetRepository(string location)
    {
        var parsed = ParseLocation(location);
        opened.Remove($"{parsed.Kind}:{parsed.Value}");
    }

    /// <summary>What the listings of this item skipped (stray names), as warnings: the engine collects them on its own threads.</summary>
    protected override void AfterItem()
    {
        foreach (var repository in opened.Values)
        {
            foreach (var warning in repository.TakeWarnings())
            {
                WriteWarning(warning);
            }
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            foreach (var repository in opened.Values)
            {
                (repository as IDisposable)?.Dispose();
            }

            opened.Clear();
            rbdClient?.Dispose();
            rbdClient = null;
        }

        base.Dispose(disposing);
    }

    protected static RbdImageRef ParseImage(string spec) => RbdImageRef.Parse(spec);

    /// <summary>
    /// Where a backup is, as messages name it: its directory in a file repository, its container
    /// in a pool; in a bucket, whose container is the bucket itself, its objects' URL prefix.
    /// </summary>
    protected static string Place(Engine.BackupInfo backup) =>
        backup.Repository.IndexOf("://", StringComparison.Ordinal) is var scheme and > 0 ? $"{backup.Repository[..scheme]}://{backup.Container}/{backup.Prefix}*"
        : Path.IsPathFullyQualified(backup.Repository) ? Path.Combine(backup.Repository, backup.Container)
        : $"{backup.Repository}/{backup.Container}";
}
