using System.Management.Automation;
using BlockBackup.Engine.Configuration;
using BlockBackup.Engine.Errors;

namespace BlockBackup.Commands;

/// <summary>Removes registered repositories (the registration and its stored secret); the repositories' data stays.</summary>
[Cmdlet(VerbsLifecycle.Unregister, "BackupRepository", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.Medium)]
[OutputType(typeof(RegisteredRepository))]
public sealed class UnregisterBackupRepositoryCommand : RegisteredRepositoryCmdlet
{
    /// <summary>The registered names to remove (no wildcards: pipe Get-BackupRepository for those).</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    [ArgumentCompleter(typeof(RegisteredRepositoryNameCompleter))]
    public string[] Name { get; set; } = null!;

    /// <summary>Emit each removed registration.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    protected override void ProcessRecord()
    {
        var registry = Registry();
        foreach (var name in Name)
        {
            ForItem(() =>
            {
                var registered = registry.Names().FirstOrDefault(n => string.Equals(n, name, StringComparison.OrdinalIgnoreCase))
                    ?? throw NotRegistered(registry, name);
                // Read (and so validated) first: a damaged registration is removed too, and so is one
                // another user could change (the file only: its folder was checked, so removing a name from it is safe).
                RegisteredRepository? repository = null;
                try
                {
                    repository = registry.Get(registered);
                }
                catch (BackupException ex) when (ex.ErrorId == "RepositoryRegistrationInvalid" || (ex.ErrorId == ConfigurationFiles.NotTrustedId && Equals(ex.Target, registry.RegistrationPath(registered))))
                {
                    WriteWarning($"{ex.Message} It is removed anyway.");
                }

                if (ShouldProcess(registry.RegistrationPath(registered), $"Unregister backup repository '{registered}' (its registration and stored secret; the data in the repository stays)"))
                {
                    registry.Unregister(registered);
                    if (PassThru && repository is not null)
                    {
                        WriteObject(repository);
                    }
                }
            });
        }
    }
}
