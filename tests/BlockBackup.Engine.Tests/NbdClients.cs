using System.Diagnostics;
using System.Net.Sockets;
using BlockBackup.Engine.Nbd;
using Xunit;

namespace BlockBackup.Engine.Tests;

/// <summary>
/// The real NBD clients the export is tested with (libnbd's nbdinfo, nbdcopy, nbdsh, nbdfuse;
/// qemu-img), and an in-process server on a Unix socket for them to talk to.
/// </summary>
internal static class NbdClients
{
    public static string? SkipReason { get; } =
        new[] { "nbdinfo", "nbdcopy", "nbdsh", "nbdfuse", "qemu-img" }.FirstOrDefault(t => Which(t) is null) is { } missing
            ? $"the NBD client '{missing}' is not installed (Debian: libnbd-bin, python3-libnbd, qemu-utils)"
            : null;

    public static string? Which(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(':').Select(d => Path.Combine(d, tool)).FirstOrDefault(File.Exists);

    public static (int Exit, string Out, string Err) Run(string tool, params string[] args)
    {
        var info = new ProcessStartInfo(tool) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }

        using var p = Process.Start(info)!;
        var stderr = p.StandardError.ReadToEndAsync();
        var stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return (p.ExitCode, stdout, stderr.GetAwaiter().GetResult());
    }

    public static string RunOk(string tool, params string[] args)
    {
        var (exit, output, error) = Run(tool, args);
        Assert.True(exit == 0, $"{tool} {string.Join(' ', args)} exited {exit}: {error}");
        return output;
    }

    /// <summary>
    /// Reads 4 KiB at each offset through libnbd (nbdsh), several requests in flight at once
    /// (aio_pread), and returns their SHA-256 values in the offsets' order.
    /// </summary>
    public static string[] RandomReads(string uri, IReadOnlyList<long> offsets, int length = 4096)
    {
        var script = $$"""
            import hashlib
            offsets = [{{string.Join(",", offsets)}}]
            bufs = [nbd.Buffer({{length}}) for _ in offsets]
            cookies = [h.aio_pread(b, o) for b, o in zip(bufs, offsets)]
            for c in cookies:
                while not h.aio_command_completed(c):
                    h.poll(-1)
            for b in bufs:
                print(hashlib.sha256(b.to_bytearray()).hexdigest())
            """;
        return RunOk(NbdshPython, ["-m", "nbd", "-u", uri, "-c", script]).Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }

    /// <summary>nbdsh run by the system's python (python3-libnbd is installed for it, not for a pyenv python earlier on PATH).</summary>
    public const string NbdshPython = "/usr/bin/python3";

    public static (int Exit, string Out, string Err) Nbdsh(string uri, string code) => Run(NbdshPython, "-m", "nbd", "-u", uri, "-c", code);
}

/// <summary>An in-process NBD server for one export on a Unix socket, with what it logged.</summary>
internal sealed class NbdTestServer : IDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _running;
    private readonly List<string> _log = [];

    public NbdTestServer(IBlockExport export, string directory, string name = "vol")
    {
        Export = export;
        SocketPath = Path.Combine(directory, name + ".sock");
        Server = new NbdServer(export, name, line =>
        {
            lock (_log)
            {
                _log.Add(line);
            }
        });
        var listener = NbdServer.Listen(new UnixDomainSocketEndPoint(SocketPath));
        _running = Server.RunAsync(listener, _stop.Token);
        Uri = $"nbd+unix:///{name}?socket={SocketPath}";
    }

    public IBlockExport Export { get; }
    public NbdServer Server { get; }
    public string SocketPath { get; }
    public string Uri { get; }

    public IReadOnlyList<string> Log
    {
        get
        {
            lock (_log)
            {
                return _log.ToList();
            }
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _running.GetAwaiter().GetResult();
        Export.Dispose();
        _stop.Dispose();
    }
}

/// <summary>A test that needs the real NBD clients; skipped, with the reason, where they are missing.</summary>
public sealed class NbdFactAttribute : FactAttribute
{
    public NbdFactAttribute()
    {
        if (NbdClients.SkipReason is { } reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>A test that needs the NBD clients and the S3 gateway.</summary>
public sealed class NbdAndS3FactAttribute : FactAttribute
{
    public NbdAndS3FactAttribute()
    {
        if ((NbdClients.SkipReason ?? ObjectStoreServers.S3SkipReason) is { } reason)
        {
            Skip = reason;
        }
    }
}

/// <summary>A test that needs the NBD clients and the Swift gateway.</summary>
public sealed class NbdAndSwiftFactAttribute : FactAttribute
{
    public NbdAndSwiftFactAttribute()
    {
        if ((NbdClients.SkipReason ?? ObjectStoreServers.SwiftSkipReason) is { } reason)
        {
            Skip = reason;
        }
    }
}
