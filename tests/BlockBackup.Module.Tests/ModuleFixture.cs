using System.Reflection;
using System.Runtime.InteropServices;
using System.Xml.Linq;

namespace BlockBackup.Module.Tests;

/// <summary>
/// The laid-out module (out/BlockBackup) read without a PowerShell runtime: the cmdlet assembly
/// through MetadataLoadContext, the manifest and help as text/XML.
/// </summary>
public sealed class ModuleFixture : IDisposable
{
    public ModuleFixture()
    {
        var meta = typeof(ModuleFixture).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().ToDictionary(a => a.Key, a => a.Value!);
        RepoRoot = Path.GetFullPath(meta["RepoRoot"]);
        ModuleDir = Path.Combine(RepoRoot, "out", "BlockBackup");
        var sma = meta["SmaPath"];
        var paths = Directory.GetFiles(RuntimeEnvironment.GetRuntimeDirectory(), "*.dll")
            .Concat(Directory.GetFiles(ModuleDir, "*.dll"))
            .Append(sma);
        Context = new MetadataLoadContext(new PathAssemblyResolver(paths));
        Assembly = Context.LoadFromAssemblyPath(Path.Combine(ModuleDir, "BlockBackup.dll"));
        Sma = Context.LoadFromAssemblyPath(sma);
        var cmdletBase = Sma.GetType("System.Management.Automation.Cmdlet")!;
        Cmdlets = Assembly.GetExportedTypes()
            .Where(t => !t.IsAbstract && cmdletBase.IsAssignableFrom(t))
            .Select(t => new CmdletInfo(t, CmdletAttribute(t)))
            .OrderBy(c => c.Name, StringComparer.Ordinal)
            .ToList();
        Help = XDocument.Load(Path.Combine(ModuleDir, "en-US", "BlockBackup.dll-Help.xml"));
        Manifest = File.ReadAllText(Path.Combine(ModuleDir, "BlockBackup.psd1"));
    }

    public string RepoRoot { get; }
    public string ModuleDir { get; }
    public MetadataLoadContext Context { get; }
    public Assembly Assembly { get; }
    public Assembly Sma { get; }
    public IReadOnlyList<CmdletInfo> Cmdlets { get; }
    public XDocument Help { get; }
    public string Manifest { get; }

    private static CustomAttributeData CmdletAttribute(Type t) =>
        t.GetCustomAttributesData().Single(a => a.AttributeType.FullName == "System.Management.Automation.CmdletAttribute");

    public void Dispose() => Context.Dispose();
}

public sealed class CmdletInfo(Type type, CustomAttributeData attribute)
{
    public Type Type { get; } = type;
    public string Verb { get; } = (string)attribute.ConstructorArguments[0].Value!;
    public string Noun { get; } = (string)attribute.ConstructorArguments[1].Value!;
    public string Name => $"{Verb}-{Noun}";

    public T? Named<T>(string name) =>
        attribute.NamedArguments.Where(a => a.MemberName == name).Select(a => (T?)a.TypedValue.Value).FirstOrDefault();

    /// <summary>Parameters: properties carrying [Parameter], with their attribute data.</summary>
    public IEnumerable<(PropertyInfo Property, IList<CustomAttributeData> Parameters)> Parameters() =>
        Type.GetProperties()
            .Select(p => (p, (IList<CustomAttributeData>)p.GetCustomAttributesData().Where(a => a.AttributeType.Name == "ParameterAttribute").ToList()))
            .Where(x => x.Item2.Count > 0);

    public IEnumerable<CustomAttributeData> Attributes(string name) =>
        Type.GetCustomAttributesData().Where(a => a.AttributeType.Name == name);
}
