using System.Management.Automation;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Rbd;

namespace BlockBackup.Commands;

/// <summary>
/// Base of the cmdlets that work on a repository, which is either a directory (file/NFS, Cinder's
/// chunked format) or "rbd:&lt;pool&gt;" (a Ceph backup pool in Cinder's Ceph driver layout).
/// Carries the Ceph connection parameters; without them Ceph's client defaults apply
/// (CEPH_CONF, /etc/ceph/ceph.conf, client.admin). One cluster connection serves every record
/// of the pipeline and is closed when PowerShell disposes the cmdlet.
/// </summary>
public abstract class RepositoryCmdlet : EngineCmdlet
{
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

    protected static bool IsRbd(string repository) => RbdBackupPool.IsRbdRepository(repository);

    protected RbdClient RbdClient() =>
        rbdClient ??= new(new RbdConnection(CephConfig is null ? null : ResolvePath(CephConfig), CephUser, CephKeyring is null ? null : ResolvePath(CephKeyring)));

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            rbdClient?.Dispose();
            rbdClient = null;
        }

        base.Dispose(disposing);
    }

    protected RbdBackupPool OpenPool(string repository)
    {
        try
        {
            return RbdBackupPool.Open(RbdClient(), repository);
        }
        catch (BackupException ex)
        {
            ThrowTerminatingError(ToErrorRecord(ex));
            throw;
        }
    }

    protected static RbdImageRef ParseImage(string spec) => RbdImageRef.Parse(spec);
}
