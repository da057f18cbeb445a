using BlockBackup.Engine.Configuration;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Rbd;
using BlockBackup.Engine.Repository;

namespace BlockBackup.Engine.Policies;

/// <summary>
/// A policy's repository as it is stored and as each run finds it again. A policy outlives the
/// session that made it and runs where no current directory means anything (systemd starts it
/// in /, cron in $HOME, DSC in the module's folder), so it keeps what the user named: a
/// registered repository's name (looked up at every run, so a changed endpoint or credential
/// is followed and an unregistered one fails the run instead of backing up into a directory of
/// that name), an s3://, swift:// or rbd: location as written, and only a path made absolute.
/// </summary>
public static class PolicyRepository
{
    /// <summary>
    /// What to store for <paramref name="repository"/> as the user gave it; paths are made
    /// absolute by <paramref name="resolvePath"/> (the caller's location). A bare name counts as
    /// a registered repository's only when one is registered (else it is a directory, as
    /// everywhere else in the module); write ./name for a directory of a registered name.
    /// </summary>
    public static string ForStorage(string repository, Func<string, string> resolvePath, RepositoryRegistry? registry = null)
    {
        if (string.IsNullOrWhiteSpace(repository))
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidRepository",
                "The repository location is empty: give a directory, rbd:<pool>, s3://bucket, swift://container or a registered repository's name.", repository);
        }

        if (RbdBackupPool.IsRbdRepository(repository))
        {
            return repository;
        }

        if (HasScheme(repository))
        {
            // Checked now (an unsupported scheme or a bad bucket name), kept as written: the
            // connection is found at each run (a registration naming the URL, or the environment),
            // so nothing here reads a registration's secret.
            if (repository[..repository.IndexOf("://", StringComparison.Ordinal)].ToLowerInvariant() is not ("s3" or "swift"))
            {
                throw new BackupException(BackupErrorKind.NotSupported, "RepositoryKindNotSupported",
                    $"'{repository}' is not a repository a policy can use: give a directory, rbd:<pool>, s3://bucket[/prefix], swift://container[/prefix] or a registered repository's name.", repository);
            }

            _ = ObjectStoreTarget.Parse(repository);
            return repository;
        }

        if (RepositoryRegistry.IsValidName(repository) && (registry ?? new RepositoryRegistry()).TryGet(repository) is { } registered)
        {
            return registered.Name;
        }

        return resolvePath(repository);
    }

    /// <summary>
    /// The location a run backs up into. A bare name is a registration that must still exist
    /// (RepositoryNotRegistered otherwise: nothing is written anywhere); a path must be absolute
    /// (a hand-written relative one would land wherever the scheduler runs).
    /// </summary>
    public static RepositoryLocation Resolve(BackupPolicy policy, RepositoryRegistry? registry = null)
    {
        var stored = policy.Repository;
        registry ??= new RepositoryRegistry();
        if (RepositoryRegistry.IsValidName(stored))
        {
            if (registry.TryGet(stored) is null)
            {
                throw new BackupException(BackupErrorKind.NotFound, "RepositoryNotRegistered",
                    $"Backup policy '{policy.Name}' backs up into the registered repository '{stored}', which is not registered on this node (in '{registry.RepositoriesDirectory}'); nothing was backed up. Register it again (Register-BackupRepository -Name {stored} …) or point the policy elsewhere (Set-BackupPolicy -Name {policy.Name} -Repository …).", stored);
            }

            return RepositoryLocation.Parse(stored, Path.GetFullPath, registry);
        }

        if (!RbdBackupPool.IsRbdRepository(stored) && !HasScheme(stored) && !Path.IsPathFullyQualified(stored))
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "RepositoryPathNotAbsolute",
                $"Backup policy '{policy.Name}' names the repository directory '{stored}', which is not an absolute path: a scheduled run has no current directory to find it from. Set it with Set-BackupPolicy -Name {policy.Name} -Repository <absolute path>.", stored);
        }

        return RepositoryLocation.Parse(stored, Path.GetFullPath, registry);
    }

    private static bool HasScheme(string text)
    {
        var scheme = text.IndexOf("://", StringComparison.Ordinal);
        return scheme > 0 && text[..scheme].All(char.IsAsciiLetterOrDigit);
    }
}
