using System.Diagnostics;
using System.Security.Cryptography;
using BlockBackup.Bench;
using BlockBackup.Engine;
using BlockBackup.Engine.Compression;
using BlockBackup.Engine.Operations;
using BlockBackup.Engine.Repository;

namespace BlockBackup.Engine.Tests;

/// <summary>A scratch directory with a repository in it, deleted afterwards.</summary>
public sealed class Scratch : IDisposable
{
    public Scratch()
    {
        Dir = Path.Combine(Path.GetTempPath(), "bbtest-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(Dir);
        RepoPath = Path.Combine(Dir, "repo");
        Repository = BackupRepository.Open(RepoPath, create: true);
    }

    public string Dir { get; }
    public string RepoPath { get; }
    public BackupRepository Repository { get; }

    public string PathOf(string name) => Path.Combine(Dir, name);

    /// <summary>A volume of mixed random, text, zero and hole regions (region = 64 KiB so small volumes mix too).</summary>
    public string MixedVolume(string name, long size, int seed)
    {
        var path = PathOf(name);
        var rnd = new Random(seed);
        using var f = new FileStream(path, FileMode.Create, FileAccess.Write);
        const int region = 64 * 1024;
        var buffer = new byte[region];
        for (long pos = 0; pos < size; pos += region)
        {
            var n = (int)Math.Min(region, size - pos);
            var kind = "rtzh"[rnd.Next(4)];
            if (kind == 'h')
            {
                continue;
            }

            VolumeGenerator.Fill(kind, rnd, buffer.AsSpan(0, n));
            RandomAccess.Write(f.SafeFileHandle, buffer.AsSpan(0, n), pos);
        }

        f.SetLength(size);
        return path;
    }

    /// <summary>Overwrites a few random ranges (some with zeros, some with data) in place.</summary>
    public static void Scribble(string path, int seed, int writes = 8)
    {
        var rnd = new Random(seed);
        using var f = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        if (f.Length == 0)
        {
            return;
        }

        for (var i = 0; i < writes; i++)
        {
            var len = (int)Math.Min(f.Length, rnd.Next(1, 100_000));
            var off = rnd.NextInt64(0, f.Length - len + 1);
            var data = new byte[len];
            if (rnd.Next(3) > 0)
            {
                rnd.NextBytes(data);
            }

            RandomAccess.Write(f.SafeFileHandle, data, off);
        }
    }

    public BackupResult Backup(string volume, bool incremental = false, CompressionAlgorithm compression = CompressionAlgorithm.Zlib, long objectSize = 1 << 20, string? name = null, Guid? parent = null) =>
        BackupOperation.Run(Repository, new BackupRequest
        {
            SourcePath = volume,
            Incremental = incremental,
            ParentId = parent,
            Compression = compression,
            ObjectSize = objectSize,
            Name = name,
            UseSnapshot = false,
        });

    public RestoreResult Restore(Guid id, string target, bool overwrite = false) =>
        RestoreOperation.Run(Repository, new RestoreRequest { BackupId = id, TargetPath = target, Overwrite = overwrite });

    public static string Sha(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    /// <summary>Every file under the repository with its hash: to prove an operation left the others alone.</summary>
    public Dictionary<string, string> Snapshot() =>
        Directory.EnumerateFiles(RepoPath, "*", SearchOption.AllDirectories)
            .Where(f => !f.Contains(Path.DirectorySeparatorChar + ".blockbackup" + Path.DirectorySeparatorChar, StringComparison.Ordinal))
            .ToDictionary(f => Path.GetRelativePath(RepoPath, f), Sha);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

internal static class Bbk
{
    /// <summary>Starts the bbk command line (built beside the tests) as a child process.</summary>
    public static Process Start(params string[] args) => Start(new Dictionary<string, string>(), args);

    /// <summary>Starts bbk with <paramref name="environment"/> added to the child's environment only.</summary>
    public static Process Start(IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var command = Command(args);
        var psi = new ProcessStartInfo(command[0]) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in command.Skip(1))
        {
            psi.ArgumentList.Add(a);
        }

        foreach (var (name, value) in environment)
        {
            psi.Environment[name] = value;
        }

        return Process.Start(psi)!;
    }

    /// <summary>
    /// Starts bbk under <paramref name="wrapper"/> (e.g. strace), which then runs the process that
    /// does the work itself (the dotnet host with bbk.dll, no launcher in between).
    /// </summary>
    public static Process StartUnder(string wrapper, IEnumerable<string> wrapperArgs, params string[] args) =>
        StartUnder(new Dictionary<string, string>(), wrapper, wrapperArgs, args);

    /// <summary>The same, with <paramref name="environment"/> added to the child's environment only.</summary>
    public static Process StartUnder(IReadOnlyDictionary<string, string> environment, string wrapper, IEnumerable<string> wrapperArgs, params string[] args)
    {
        var psi = new ProcessStartInfo(wrapper) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in wrapperArgs.Concat(Command(args)))
        {
            psi.ArgumentList.Add(a);
        }

        foreach (var (name, value) in environment)
        {
            psi.Environment[name] = value;
        }

        return Process.Start(psi)!;
    }

    /// <summary>The command line that runs bbk: the program first (the dotnet host, unless the tests run as bbk).</summary>
    private static List<string> Command(string[] args)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "bbk.dll");
        return Path.GetFileNameWithoutExtension(Environment.ProcessPath!) is "bbk"
            ? [Environment.ProcessPath!, .. args]
            : [DotnetHost(), dll, .. args];
    }

    private static string DotnetHost()
    {
        var path = Environment.ProcessPath!;
        return Path.GetFileNameWithoutExtension(path) == "dotnet" ? path : Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet";
    }
}
