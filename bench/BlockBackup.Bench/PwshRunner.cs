using System.Diagnostics;

namespace BlockBackup.Bench;

/// <summary>
/// Runs one operation as a user does: a fresh pwsh that imports the built module and runs a
/// cmdlet, then prints a RESULT line with the elapsed time and the peak RSS of that pwsh process
/// (the module's cost on top of PowerShell's own ~110 MB). A dotnet-tool pwsh is a launcher, so
/// the executable used is the one in its $PSHOME, and the script measures itself.
/// </summary>
internal sealed class PwshRunner
{
    private readonly string pwsh;
    private readonly string module;

    private PwshRunner(string pwsh, string module)
    {
        this.pwsh = pwsh;
        this.module = module;
    }

    /// <summary>
    /// The module: <paramref name="modulePath"/>, else out/BlockBackup of the clone bbk was built
    /// in. pwsh: BBK_PWSH, else the pinned local tool's (dotnet pwsh, resolved in that clone).
    /// </summary>
    public static PwshRunner Locate(string? modulePath)
    {
        var clone = FindClone(AppContext.BaseDirectory);
        var manifest = modulePath ?? (clone is null ? null : Path.Combine(clone, "out", "BlockBackup", "BlockBackup.psd1"));
        if (manifest is null || !File.Exists(manifest))
        {
            throw new InvalidOperationException($"No built module at '{manifest}': run `dotnet build` in the clone, or give --module <path to BlockBackup.psd1>.");
        }

        var pwsh = Environment.GetEnvironmentVariable("BBK_PWSH");
        if (string.IsNullOrEmpty(pwsh))
        {
            var psi = new ProcessStartInfo("dotnet") { WorkingDirectory = clone ?? Environment.CurrentDirectory, RedirectStandardOutput = true, UseShellExecute = false };
            foreach (var a in new[] { "pwsh", "-NoProfile", "-NonInteractive", "-Command", "$PSHOME" })
            {
                psi.ArgumentList.Add(a);
            }

            using var p = Process.Start(psi)!;
            var home = p.StandardOutput.ReadToEnd().Trim();
            p.WaitForExit();
            pwsh = Path.Combine(home, OperatingSystem.IsWindows() ? "pwsh.exe" : "pwsh");
            if (p.ExitCode != 0 || !File.Exists(pwsh))
            {
                throw new InvalidOperationException("`dotnet pwsh` did not give a $PSHOME with pwsh in it: run `dotnet tool restore` in the clone, or set BBK_PWSH.");
            }
        }

        return new PwshRunner(pwsh, Path.GetFullPath(manifest));
    }

    public override string ToString() => $"{pwsh} with {module}";

    /// <summary>
    /// Runs <paramref name="body"/> (PowerShell statements whose output is a string of extra
    /// key=value pairs) after importing the module and returns the RESULT pairs.
    /// </summary>
    public Dictionary<string, string> Run(string description, string body)
    {
        var script = Path.Combine(Path.GetTempPath(), $"bbk-pwsh-{Guid.NewGuid():N}.ps1");
        File.WriteAllText(script, $$"""
            $ErrorActionPreference = 'Stop'
            Import-Module {{Quote(module)}}
            $clock = [Diagnostics.Stopwatch]::StartNew()
            $extra = & { {{body}} }
            $seconds = $clock.Elapsed.TotalSeconds.ToString('F3', [cultureinfo]::InvariantCulture)
            $status = if (Test-Path /proc/self/status) { Get-Content /proc/self/status | Where-Object { $_ -like 'VmHWM:*' } }
            $peakMb = if ($status) { [math]::Round([long]($status -replace '\D', '') / 1024) } else { [math]::Round((Get-Process -Id $PID).PeakWorkingSet64 / 1MB) }
            "RESULT op=pwsh elapsed=$seconds maxrss_mb=$peakMb $extra"
            """);
        try
        {
            var psi = new ProcessStartInfo(pwsh);
            foreach (var a in new[] { "-NoProfile", "-NonInteractive", "-File", script })
            {
                psi.ArgumentList.Add(a);
            }

            var result = Benchmark.Child(psi, $"pwsh: {description}");
            Console.WriteLine($"  {description} in pwsh: {result["elapsed"]} s, peak RSS {result["maxrss_mb"]} MB");
            return result;
        }
        finally
        {
            File.Delete(script);
        }
    }

    /// <summary>A PowerShell single-quoted string literal.</summary>
    public static string Quote(string text) => "'" + text.Replace("'", "''", StringComparison.Ordinal) + "'";

    private static string? FindClone(string from)
    {
        for (var dir = new DirectoryInfo(from); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "BlockBackup.sln")))
            {
                return dir.FullName;
            }
        }

        return null;
    }
}
