namespace BlockBackup.Engine.Repository;

/// <summary>Whether a location string names a Ceph pool (rbd:&lt;pool&gt;) rather than a path.</summary>
public static class RbdBackupPoolLocation
{
    public static bool IsPool(string location) => Rbd.RbdBackupPool.IsRbdRepository(location);
}
