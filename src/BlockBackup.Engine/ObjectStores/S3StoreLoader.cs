using System.Collections.Concurrent;
using System.Reflection;
using System.Runtime.ExceptionServices;
using System.Runtime.Loader;
using BlockBackup.Engine.Errors;

namespace BlockBackup.Engine.ObjectStores;

/// <summary>
/// Creates the S3 object store, which lives in BlockBackup.ObjectStores.S3.dll with the AWS SDK
/// (AWSSDK.Core, AWSSDK.S3) in the module's <c>s3/</c> folder. They are loaded into an isolated
/// AssemblyLoadContext, so another PowerShell module's copy of the AWS SDK in the same session
/// (AWS.Tools, another version) neither clashes with nor is used by ours: the context loads
/// AWSSDK.*.dll, the SDK's one non-framework dependency (System.IO.Hashing) and the store from
/// that folder, hands out this process's BlockBackup.Engine (so the
/// store's IObjectStore is the caller's), and leaves everything else to the default context.
/// </summary>
public static class S3StoreLoader
{
    public const string StoreAssembly = "BlockBackup.ObjectStores.S3";
    public const string StoreType = "BlockBackup.ObjectStores.S3.S3ObjectStore";

    /// <summary>What the s3/ folder holds: the store and the AWS SDK with its dependencies.</summary>
    public static IReadOnlyList<string> Assemblies { get; } =
        [StoreAssembly, "AWSSDK.Core", "AWSSDK.S3", "AWSSDK.Extensions.Numerics", "System.IO.Hashing"];

    private static readonly ConcurrentDictionary<string, Lazy<Type>> Loaded = new(StringComparer.Ordinal);

    /// <summary>The S3 store, with the assemblies from <see cref="DefaultDirectory"/>.</summary>
    public static IObjectStore Create(S3StoreOptions options) => Create(options, DefaultDirectory());

    /// <summary>The S3 store, with the assemblies from <paramref name="directory"/>.</summary>
    public static IObjectStore Create(S3StoreOptions options, string directory)
    {
        ArgumentNullException.ThrowIfNull(options);
        var dir = Path.GetFullPath(directory);
        var lazy = Loaded.GetOrAdd(dir, d => new Lazy<Type>(() => Load(d)));
        Type type;
        try
        {
            type = lazy.Value;
        }
        catch (Exception)
        {
            Loaded.TryRemove(new KeyValuePair<string, Lazy<Type>>(dir, lazy)); // a later call (after a reinstall) tries again
            throw;
        }

        try
        {
            return (IObjectStore)Activator.CreateInstance(type, options)!;
        }
        catch (TargetInvocationException ex) when (ex.InnerException is not null)
        {
            ExceptionDispatchInfo.Capture(ex.InnerException).Throw();
            throw;
        }
    }

    /// <summary>
    /// The module's <c>s3/</c> folder beside BlockBackup.Engine.dll; when that has no store
    /// assembly, the Engine's own folder (a test or tool output folder that references the S3 project).
    /// </summary>
    public static string DefaultDirectory()
    {
        var engineDir = Path.GetDirectoryName(typeof(IObjectStore).Assembly.Location) is { Length: > 0 } d ? d : AppContext.BaseDirectory;
        var s3 = Path.Combine(engineDir, "s3");
        return File.Exists(Path.Combine(s3, StoreAssembly + ".dll")) ? s3 : engineDir;
    }

    /// <summary>The load context the S3 store's assemblies live in, for diagnostics and tests.</summary>
    public static AssemblyLoadContext? ContextOf(IObjectStore store) => AssemblyLoadContext.GetLoadContext(store.GetType().Assembly);

    private static Type Load(string directory)
    {
        var path = Path.Combine(directory, StoreAssembly + ".dll");
        if (Assemblies.Select(a => Path.Combine(directory, a + ".dll")).FirstOrDefault(f => !File.Exists(f)) is { } missing)
        {
            throw new BackupException(BackupErrorKind.NotSupported, "S3SupportMissing",
                $"The S3 object store needs {Path.GetFileName(missing)} in '{directory}', which is not there; reinstall the BlockBackup module (its s3/ folder).", directory);
        }

        var context = new S3LoadContext(directory);
        return context.LoadFromAssemblyPath(path).GetType(StoreType, throwOnError: true)!;
    }

    private sealed class S3LoadContext(string directory) : AssemblyLoadContext("BlockBackup.S3 (" + directory + ")", isCollectible: false)
    {
        private static readonly Assembly Engine = typeof(IObjectStore).Assembly;

        protected override Assembly? Load(AssemblyName assemblyName)
        {
            var name = assemblyName.Name ?? "";
            if (name == Engine.GetName().Name)
            {
                return Engine;
            }

            if (name.StartsWith("AWSSDK.", StringComparison.Ordinal) || S3StoreLoader.Assemblies.Contains(name, StringComparer.Ordinal))
            {
                var file = Path.Combine(directory, name + ".dll");
                if (File.Exists(file))
                {
                    return LoadFromAssemblyPath(file);
                }
            }

            return null; // the default context: the framework, and anything else the caller has
        }
    }
}
