using System.Management.Automation;
using BlockBackup.Engine.Configuration;
using BlockBackup.Engine.Errors;

namespace BlockBackup.Commands;

/// <summary>Base of the registered-repository cmdlets: the node's registry (BLOCKBACKUP_CONFIG_DIR or the platform default).</summary>
public abstract class RegisteredRepositoryCmdlet : EngineCmdlet
{
    protected static RepositoryRegistry Registry() => new(NodeConfiguration.Directory());

    /// <summary>The registered names matching <paramref name="pattern"/> (wildcards); a name without wildcards that matches none is a non-terminating RepositoryNotRegistered, and so is a registry that cannot be listed.</summary>
    protected IEnumerable<string> Matching(RepositoryRegistry registry, string pattern)
    {
        var wildcard = WildcardPattern.Get(pattern, WildcardOptions.IgnoreCase);
        List<string> names;
        try
        {
            names = registry.Names().Where(wildcard.IsMatch).ToList();
        }
        catch (BackupException ex)
        {
            // The registry's directory cannot be trusted (ConfigurationNotTrusted): an error for this pattern, as for any other item.
            WriteError(ToErrorRecord(ex));
            return [];
        }

        if (names.Count == 0 && !WildcardPattern.ContainsWildcardCharacters(pattern))
        {
            WriteError(ToErrorRecord(NotRegistered(registry, pattern)));
        }

        return names;
    }

    protected static BackupException NotRegistered(RepositoryRegistry registry, string name) =>
        new(BackupErrorKind.NotFound, "RepositoryNotRegistered",
            $"No repository '{name}' is registered in '{registry.RepositoriesDirectory}'; Get-BackupRepository lists them, Register-BackupRepository adds one.", name);
}
