using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Language;
using BlockBackup.Engine;
using BlockBackup.Engine.Repository;

namespace BlockBackup.Commands;

/// <summary>
/// Shared by the completers: the backups of the directory repository named on the command line,
/// resolved like the cmdlet will resolve it (the session's location, ~, PSDrives). Offline and
/// fast (the repository's listing cache); rbd: pools are not contacted while typing; failures
/// complete nothing rather than throwing.
/// </summary>
internal static class CompletionSource
{
    public static IEnumerable<BackupInfo> Backups(IDictionary fakeBoundParameters)
    {
        if (fakeBoundParameters["Repository"] is not string path || string.IsNullOrWhiteSpace(path))
        {
            return [];
        }

        try
        {
            var location = RepositoryLocation.Parse(path, ResolveInSession);
            return location.Kind == RepositoryKind.File ? BackupRepository.Open(location.Value, create: false).List() : [];
        }
        catch (Exception)
        {
            return [];
        }
    }

    // Completers get no SessionState; a script block runs in the session that is completing.
    private static readonly ScriptBlock Resolver = ScriptBlock.Create("param($p) $ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($p)");

    private static string ResolveInSession(string path) =>
        Resolver.Invoke(path) is [{ BaseObject: string resolved }] ? resolved : Path.GetFullPath(path);

    public static string Quote(string text) =>
        text.IndexOfAny([' ', '\'', '"', '$', '`', ';', '(', ')', '{', '}']) >= 0 ? "'" + text.Replace("'", "''", StringComparison.Ordinal) + "'" : text;
}

/// <summary>
/// Completes backup ids, newest first, showing name and time, for a directory repository typed or
/// registered. Object-store repositories (S3, Swift) and rbd: pools complete nothing: they keep
/// no local listing, and a LIST round trip per keypress would stall the prompt.
/// </summary>
public sealed class BackupIdCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var word = (wordToComplete ?? string.Empty).Trim('\'', '"');
        var pattern = WildcardPattern.Get(word + "*", WildcardOptions.IgnoreCase);
        return CompletionSource.Backups(fakeBoundParameters)
            .OrderByDescending(b => b.CreatedUtc)
            .Where(b => pattern.IsMatch(b.Id.ToString()) || (b.Name is not null && pattern.IsMatch(b.Name)))
            .Select(b => new CompletionResult(b.Id.ToString(), $"{b.Id} {b.Name}",
                CompletionResultType.ParameterValue, $"{b.Name ?? "(unnamed)"}, {(b.IsIncremental ? "incremental" : "full")}, {b.CreatedUtc.ToLocalTime():g}"));
    }
}

/// <summary>Completes backup names.</summary>
public sealed class BackupNameCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var word = (wordToComplete ?? string.Empty).Trim('\'', '"');
        var pattern = WildcardPattern.Get(word + "*", WildcardOptions.IgnoreCase);
        return CompletionSource.Backups(fakeBoundParameters)
            .Where(b => b.Name is not null && pattern.IsMatch(b.Name))
            .Select(b => b.Name!)
            .Distinct(StringComparer.OrdinalIgnoreCase)
            .Select(name => new CompletionResult(CompletionSource.Quote(name), name, CompletionResultType.ParameterValue, name));
    }
}

/// <summary>Completes the names of the repositories registered on this node (Register-BackupRepository), showing each one's location.</summary>
public sealed class RegisteredRepositoryNameCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var word = (wordToComplete ?? string.Empty).Trim('\'', '"');
        var pattern = WildcardPattern.Get(word + "*", WildcardOptions.IgnoreCase);
        try
        {
            var registry = new Engine.Configuration.RepositoryRegistry();
            return registry.Names().Where(pattern.IsMatch).Select(name => new CompletionResult(name, name, CompletionResultType.ParameterValue, Describe(registry, name))).ToList();
        }
        catch (Exception)
        {
            return [];
        }
    }

    private static string Describe(Engine.Configuration.RepositoryRegistry registry, string name)
    {
        try
        {
            return registry.TryGet(name) is { } repository ? $"{name}: {repository.Uri}{(repository.Endpoint is null ? "" : $" at {repository.Endpoint}")}" : name;
        }
        catch (Engine.Errors.BackupException)
        {
            return $"{name} (invalid registration)";
        }
    }
}

/// <summary>
/// Completes -Repository: the names registered on this node first (with their locations), then
/// paths, as PowerShell completes them, for a directory repository.
/// </summary>
public sealed class RepositoryCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var names = new RegisteredRepositoryNameCompleter().CompleteArgument(commandName, parameterName, wordToComplete, commandAst, fakeBoundParameters).ToList();
        IEnumerable<CompletionResult> paths;
        try
        {
            paths = CompletionCompleters.CompleteFilename(wordToComplete ?? string.Empty);
        }
        catch (Exception)
        {
            paths = [];
        }

        return names.Concat(paths);
    }
}

/// <summary>Completes the names of this node's backup policies (not file paths), showing each one's repository and schedule.</summary>
public sealed class PolicyNameCompleter : IArgumentCompleter
{
    public IEnumerable<CompletionResult> CompleteArgument(string commandName, string parameterName, string wordToComplete, CommandAst commandAst, IDictionary fakeBoundParameters)
    {
        var word = (wordToComplete ?? string.Empty).Trim('\'', '"');
        var pattern = WildcardPattern.Get(word + "*", WildcardOptions.IgnoreCase);
        try
        {
            var store = new Engine.Policies.PolicyStore(Engine.Configuration.NodeConfiguration.Directory());
            return store.Names().Where(pattern.IsMatch).Select(name => new CompletionResult(CompletionSource.Quote(name), name, CompletionResultType.ParameterValue, name)).ToList();
        }
        catch (Exception)
        {
            return [];
        }
    }
}
