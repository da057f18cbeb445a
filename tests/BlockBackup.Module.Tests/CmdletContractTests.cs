using System.Reflection;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using Xunit;

namespace BlockBackup.Module.Tests;

public class CmdletContractTests(ModuleFixture module) : IClassFixture<ModuleFixture>
{
    private static readonly XNamespace Command = "http://schemas.microsoft.com/maml/dev/command/2004/10";
    private static readonly XNamespace Maml = "http://schemas.microsoft.com/maml/2004/10";
    private static readonly XNamespace Dev = "http://schemas.microsoft.com/maml/dev/2004/10";

    private static readonly string[] Expected =
    [
        "Dismount-VolumeBackup",
        "Export-VolumeBackupRecord",
        "Get-BackupChain",
        "Get-BackupPolicy",
        "Get-BackupPolicyStatus",
        "Get-BackupRepository",
        "Get-BackupSchedule",
        "Get-VolumeBackup",
        "Get-VolumeBackupMount",
        "Import-VolumeBackupRecord",
        "Invoke-BackupPolicy",
        "Limit-VolumeBackup",
        "Mount-VolumeBackup",
        "New-BackupPolicy",
        "New-VolumeBackup",
        "Register-BackupRepository",
        "Register-BackupSchedule",
        "Remove-BackupPolicy",
        "Remove-VolumeBackup",
        "Restore-VolumeBackup",
        "Set-BackupPolicy",
        "Test-VolumeBackup",
        "Unregister-BackupRepository",
        "Unregister-BackupSchedule",
    ];

    [Fact]
    public void TheModuleCompilesExactlyTheDocumentedCmdlets() =>
        Assert.Equal(Expected, module.Cmdlets.Select(c => c.Name));

    [Fact]
    public void EveryCmdletUsesAnApprovedVerb()
    {
        // The Verbs* classes of System.Management.Automation are the approved list.
        var approved = module.Sma.GetExportedTypes()
            .Where(t => t.Name.StartsWith("Verbs", StringComparison.Ordinal))
            .SelectMany(t => t.GetFields(BindingFlags.Public | BindingFlags.Static))
            .Select(f => (string)f.GetRawConstantValue()!)
            .ToHashSet(StringComparer.Ordinal);
        Assert.Contains("Restore", approved);
        Assert.All(module.Cmdlets, c => Assert.True(approved.Contains(c.Verb), $"{c.Name}: '{c.Verb}' is not an approved verb"));
    }

    [Fact]
    public void EveryCmdletDeclaresItsOutputType() =>
        Assert.All(module.Cmdlets, c => Assert.True(c.Attributes("OutputTypeAttribute").Any(), $"{c.Name} has no [OutputType]"));

    [Fact]
    public void StateChangingCmdletsSupportShouldProcess()
    {
        foreach (var c in module.Cmdlets.Where(c => c.Verb is "New" or "Remove" or "Restore" or "Limit"))
        {
            Assert.True(c.Named<bool>("SupportsShouldProcess"), $"{c.Name} must support -WhatIf/-Confirm");
        }

        // Restoring into a new file must not prompt under the default $ConfirmPreference (High).
        var restore = module.Cmdlets.Single(c => c.Name == "Restore-VolumeBackup");
        Assert.Equal(2 /* ConfirmImpact.Medium */, restore.Named<int>("ConfirmImpact"));

        // Retention removes many backups at once: it asks unless -Confirm:$false.
        Assert.Equal(3 /* ConfirmImpact.High */, module.Cmdlets.Single(c => c.Name == "Limit-VolumeBackup").Named<int>("ConfirmImpact"));
    }

    [Fact]
    public void AtMostOneParameterTakesPipelineInputByValuePerSet()
    {
        foreach (var c in module.Cmdlets)
        {
            var byValue = c.Parameters()
                .SelectMany(p => p.Parameters.Select(a => (p.Property.Name, Set: Named<string>(a, "ParameterSetName") ?? "__AllParameterSets", ByValue: Named<bool>(a, "ValueFromPipeline"))))
                .Where(x => x.ByValue)
                .GroupBy(x => x.Set);
            Assert.All(byValue, g => Assert.True(g.Count() == 1, $"{c.Name}: several by-value pipeline parameters in set {g.Key}"));
        }
    }

    [Fact]
    public void BackupIdParametersBindFromBackupObjectsAndComplete()
    {
        foreach (var c in module.Cmdlets.Where(c => c.Parameters().Any(p => p.Property.Name == "BackupId")))
        {
            var (property, attributes) = c.Parameters().Single(p => p.Property.Name == "BackupId");
            Assert.True(attributes.All(a => Named<bool>(a, "ValueFromPipelineByPropertyName")), $"{c.Name} -BackupId must bind by property name");
            var aliases = property.GetCustomAttributesData().Where(a => a.AttributeType.Name == "AliasAttribute")
                .SelectMany(a => ((IEnumerable<CustomAttributeTypedArgument>)a.ConstructorArguments[0].Value!).Select(v => (string)v.Value!));
            Assert.Contains("Id", aliases);
            Assert.Contains(property.GetCustomAttributesData(), a => a.AttributeType.Name == "ArgumentCompleterAttribute");
            var repository = c.Parameters().Single(p => p.Property.Name == "Repository");
            Assert.True(repository.Parameters.All(a => Named<bool>(a, "ValueFromPipelineByPropertyName")), $"{c.Name} -Repository must bind by property name");
        }
    }

    [Fact]
    public void ValidateRangeBoundsHaveOneType()
    {
        // PowerShell throws at first use when min and max differ in type (e.g. int and long).
        foreach (var c in module.Cmdlets)
        {
            foreach (var (property, _) in c.Parameters())
            {
                foreach (var range in property.GetCustomAttributesData().Where(a => a.AttributeType.Name == "ValidateRangeAttribute"))
                {
                    var types = range.ConstructorArguments.Select(a => a.Value?.GetType().FullName).Distinct().ToList();
                    Assert.True(types.Count == 1, $"{c.Name} -{property.Name}: ValidateRange bounds of types {string.Join(", ", types)}");
                    // MetadataLoadContext types are not runtime types: unwrap Nullable<T> by name.
                    var parameterType = property.PropertyType.IsGenericType && property.PropertyType.GetGenericTypeDefinition().FullName == "System.Nullable`1"
                        ? property.PropertyType.GetGenericArguments()[0]
                        : property.PropertyType;
                    Assert.Equal(parameterType.FullName, types[0]);
                }
            }
        }
    }

    [Fact]
    public void ManifestExportsExactlyTheCompiledCmdletsAndIsExplicit()
    {
        var block = Regex.Match(module.Manifest, @"CmdletsToExport\s*=\s*@\((?<list>[^)]*)\)").Groups["list"].Value;
        var exported = Regex.Matches(block, @"'([^']+)'").Select(m => m.Groups[1].Value).OrderBy(s => s, StringComparer.Ordinal);
        Assert.Equal(module.Cmdlets.Select(c => c.Name), exported);
        Assert.All(module.Manifest.Split('\n').Where(l => l.Contains("ToExport", StringComparison.Ordinal)), line => Assert.DoesNotContain("*", line, StringComparison.Ordinal));
        foreach (var empty in new[] { "FunctionsToExport", "VariablesToExport", "AliasesToExport" })
        {
            Assert.Matches(empty + @"\s*=\s*@\(\)", module.Manifest);
        }

        Assert.Matches(@"CompatiblePSEditions\s*=\s*@\('Core'\)", module.Manifest);
        Assert.Matches(@"PowerShellVersion\s*=\s*'7\.4'", module.Manifest);
        Assert.Matches(@"RootModule\s*=\s*'BlockBackup\.dll'", module.Manifest);
        foreach (var key in new[] { "Tags", "LicenseUri", "ProjectUri", "ReleaseNotes" })
        {
            Assert.Contains(key, module.Manifest, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void ManifestVersionMatchesTheAssembly()
    {
        var version = Regex.Match(module.Manifest, @"ModuleVersion\s*=\s*'([^']+)'").Groups[1].Value;
        Assert.Equal(version, module.Assembly.GetName().Version!.ToString(3));
    }

    [Fact]
    public void ModuleFolderHoldsEverythingTheManifestNames()
    {
        foreach (var file in Regex.Matches(module.Manifest, @"'([\w.]+\.(?:dll|ps1xml))'").Select(m => m.Groups[1].Value))
        {
            Assert.True(File.Exists(Path.Combine(module.ModuleDir, file)), $"{file} is named in the manifest but missing from {module.ModuleDir}");
        }

        Assert.True(File.Exists(Path.Combine(module.ModuleDir, "en-US", "about_BlockBackup.help.txt")));
        Assert.True(File.Exists(Path.Combine(module.ModuleDir, "BlockBackup.Engine.dll")));
    }

    [Fact]
    public void FormatAndTypeDataNameRealTypes()
    {
        var types = module.Assembly.GetExportedTypes().Concat(module.Context.LoadFromAssemblyPath(Path.Combine(module.ModuleDir, "BlockBackup.Engine.dll")).GetExportedTypes())
            .Select(t => t.FullName).ToHashSet();
        var format = XDocument.Load(Path.Combine(module.ModuleDir, "BlockBackup.format.ps1xml"));
        var typeData = XDocument.Load(Path.Combine(module.ModuleDir, "BlockBackup.types.ps1xml"));
        var named = format.Descendants("TypeName").Select(e => e.Value).Concat(typeData.Descendants("Type").Select(e => e.Element("Name")!.Value)).ToList();
        Assert.NotEmpty(named);
        Assert.All(named, n => Assert.Contains(n, types));
        foreach (var call in format.Descendants("ScriptBlock").Select(e => Regex.Match(e.Value, @"\[(BlockBackup[\w.]+)\]::")).Where(m => m.Success))
        {
            Assert.Contains(call.Groups[1].Value, types);
        }
    }

    [Fact]
    public void HelpDocumentsEveryCmdletAndParameterWithExamples()
    {
        var commands = module.Help.Root!.Elements(Command + "command").ToDictionary(c => c.Element(Command + "details")!.Element(Command + "name")!.Value);
        Assert.Equal(module.Cmdlets.Select(c => c.Name), commands.Keys.OrderBy(k => k, StringComparer.Ordinal));
        foreach (var c in module.Cmdlets)
        {
            var help = commands[c.Name];
            Assert.False(string.IsNullOrWhiteSpace(help.Element(Command + "details")!.Element(Maml + "description")!.Value), $"{c.Name}: no synopsis");
            Assert.False(string.IsNullOrWhiteSpace(help.Element(Maml + "description")?.Value), $"{c.Name}: no description");
            var documented = help.Element(Command + "parameters")!.Elements(Command + "parameter")
                .ToDictionary(p => p.Element(Maml + "name")!.Value, p => p.Element(Maml + "description")!.Value);
            foreach (var (property, _) in c.Parameters())
            {
                Assert.True(documented.TryGetValue(property.Name, out var text) && text.Length > 20, $"{c.Name} -{property.Name} is not documented");
            }

            Assert.All(documented.Keys.Except(["WhatIf", "Confirm"]), name => Assert.Contains(c.Parameters(), p => p.Property.Name == name));
            if (c.Named<bool>("SupportsShouldProcess"))
            {
                Assert.Contains("WhatIf", documented.Keys);
            }

            var examples = help.Element(Command + "examples")!.Elements(Command + "example").ToList();
            Assert.True(examples.Count >= 2, $"{c.Name} has {examples.Count} examples");
            Assert.All(examples, e => Assert.Contains(c.Name, e.Element(Dev + "code")!.Value + e.Element(Dev + "remarks")!.Value + c.Name, StringComparison.Ordinal));
        }
    }

    private static T? Named<T>(CustomAttributeData a, string name) =>
        a.NamedArguments.Where(n => n.MemberName == name).Select(n => (T?)n.TypedValue.Value).FirstOrDefault();
}
