using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Rbd;

namespace BlockBackup.Engine.Repository;

/// <summary>A repository location as users write it: a path (local, NFS, \\server\share) or rbd:&lt;pool&gt;[/&lt;namespace&gt;].</summary>
public sealed record RepositoryLocation(RepositoryKind Kind, string Value)
{
    /// <summary>
    /// Parses a location; paths are resolved by <paramref name="resolvePath"/> (the caller's
    /// current location, PSDrives). Object-store URLs are recognised and refused clearly until
    /// those repositories exist, rather than being taken for relative paths.
    /// </summary>
    public static RepositoryLocation Parse(string text, Func<string, string> resolvePath)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidRepository", "The repository location is empty: give a directory or rbd:<pool>.", text);
        }

        if (RbdBackupPool.IsRbdRepository(text))
        {
            return new(RepositoryKind.RbdPool, text);
        }

        var scheme = text.IndexOf("://", StringComparison.Ordinal);
        if (scheme > 0 && text[..scheme].All(char.IsAsciiLetterOrDigit))
        {
            throw new BackupException(BackupErrorKind.NotSupported, "RepositoryKindNotSupported",
                $"'{text}': {text[..scheme]}:// repositories are not supported by this version; use a directory (local or NFS) or rbd:<pool>.", text);
        }

        return new(RepositoryKind.File, resolvePath(text));
    }
}

/// <summary>Opens any repository kind from its location, the one place that knows the kinds.</summary>
public static class RepositoryFactory
{
    /// <param name="location">The parsed location.</param>
    /// <param name="ceph">The Ceph connection to use for rbd: pools (called only for them).</param>
    /// <param name="create">Create a missing file repository (backups do; reads never do).</param>
    public static IBackupRepository Open(RepositoryLocation location, Func<RbdClient> ceph, bool create = false) => location.Kind switch
    {
        RepositoryKind.RbdPool => RbdBackupPool.Open(ceph(), location.Value),
        _ => BackupRepository.Open(location.Value, create),
    };
}
