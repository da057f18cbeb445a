using System.Diagnostics;
using System.Management.Automation;
using System.Net;
using System.Net.Sockets;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Nbd;
using BlockBackup.Engine.Repository;

namespace BlockBackup.Commands;

/// <summary>
/// Serves a backup's point in time as an NBD export (read-only, or writable into a local
/// copy-on-write overlay). By default the server runs in a detached pwsh process of its own that
/// outlives this session (found again by Get-VolumeBackupMount, stopped by Dismount-VolumeBackup);
/// with -Wait it runs here until Ctrl+C, and then leaves no socket, overlay or state behind.
/// </summary>
[Cmdlet(VerbsData.Mount, "VolumeBackup")]
[OutputType(typeof(VolumeBackupMount))]
public sealed class MountVolumeBackupCommand : RepositoryCmdlet
{
    /// <summary>Set in the background server's environment: its overlay is Dismount-VolumeBackup's to discard (or keep), not its own.</summary>
    internal const string BackgroundVariable = "BLOCKBACKUP_MOUNT_BACKGROUND";

    [Parameter(Mandatory = true, Position = 0, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string Repository { get; set; } = null!;

    [Parameter(Mandatory = true, Position = 1, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true)]
    [Alias("Id")]
    [ArgumentCompleter(typeof(BackupIdCompleter))]
    public Guid BackupId { get; set; }

    /// <summary>The export's name (default: the backup id): letters, digits, '.', '_' and '-'.</summary>
    [Parameter]
    [ValidatePattern("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    public string? ExportName { get; set; }

    /// <summary>The Unix socket to listen on (default: &lt;work directory&gt;/mounts/&lt;export&gt;.sock).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Socket { get; set; }

    /// <summary>Listen on TCP at this address (127.0.0.1 for loopback) instead of a Unix socket.</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? Listen { get; set; }

    /// <summary>The TCP port with -Listen (default 10809, NBD's port; 0 picks a free one).</summary>
    [Parameter]
    [ValidateRange(0, 65535)]
    public int Port { get; set; } = 10809;

    /// <summary>Accept writes, kept in a local sparse overlay file; the backup is never changed.</summary>
    [Parameter]
    public SwitchParameter Writable { get; set; }

    /// <summary>The overlay file of a -Writable mount (default: &lt;work directory&gt;/mounts/&lt;export&gt;.overlay).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? OverlayPath { get; set; }

    /// <summary>Serve in this session until stopped (Ctrl+C), rather than in a background process.</summary>
    [Parameter]
    public SwitchParameter Wait { get; set; }

    protected override void ProcessRecord() => ForItem(() =>
    {
        var name = ExportName ?? BackupId.ToString("D");
        if (OverlayPath is not null && !Writable)
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "OverlayWithoutWritable", "-OverlayPath applies to a -Writable mount only; add -Writable or remove -OverlayPath.", OverlayPath);
        }

        if (Socket is not null && Listen is not null)
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "SocketAndListen", "Give -Socket (a Unix socket) or -Listen (a TCP address), not both.", Listen);
        }

        var address = Listen is null ? null : ParseAddress(Listen);
        if (address is not null && !IPAddress.IsLoopback(address))
        {
            WriteWarning($"Listening on {address}: NBD has no authentication or encryption, so anyone who can reach {address}:{Port} can read this backup{(Writable ? " and write to its overlay" : string.Empty)}. Listen on 127.0.0.1 or a Unix socket unless the network is trusted.");
        }

        MountRegistry.Live(out _); // a killed server's leftovers must not block its export name
        if (MountRegistry.Read(name) is { } existing)
        {
            throw new BackupException(BackupErrorKind.InvalidOperation, "ExportNameInUse",
                $"An export named '{name}' is already served (process {existing.ProcessId}, {existing.Uri}); Dismount-VolumeBackup -ExportName {name} first, or choose another -ExportName.", name);
        }

        if (Wait)
        {
            Serve(name, address);
        }
        else
        {
            WriteObject(StartInBackground(name));
        }
    });

    private static IPAddress ParseAddress(string text) => IPAddress.TryParse(text, out var a) ? a
        : text.Equals("localhost", StringComparison.OrdinalIgnoreCase) ? IPAddress.Loopback
        : throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidListenAddress", $"-Listen '{text}' is not an IP address; give one, such as 127.0.0.1 or 0.0.0.0.", text);

    /// <summary>Runs the server on the pipeline thread until Ctrl+C, SIGTERM or Dismount-VolumeBackup.</summary>
    private void Serve(string name, IPAddress? address)
    {
        if (OpenRepository(Repository) is not IChunkedRepository repository)
        {
            throw new BackupException(BackupErrorKind.NotSupported, "MountNotSupported",
                $"'{Repository}' is an RBD pool repository; Mount-VolumeBackup serves backups of directory, S3 and Swift repositories. Restore-VolumeBackup the backup to an image, or map the pool's snapshot with rbd-nbd.", Repository);
        }

        var background = Environment.GetEnvironmentVariable(BackgroundVariable) == "1";
        var overlay = Writable ? (OverlayPath is null ? MountRegistry.DefaultOverlay(name) : ResolvePath(OverlayPath)) : null;
        var socketPath = address is null ? (Socket is null ? MountRegistry.DefaultSocket(name) : ResolvePath(Socket)) : null;
        Directory.CreateDirectory(MountRegistry.Directory);
        IBlockExport export = BackupBlockReader.Open(repository, BackupId, cancellationToken: StopToken);
        VolumeBackupMount? mount = null;
        try
        {
            if (overlay is not null)
            {
                export = new CopyOnWriteOverlay(export, overlay);
            }

            using var listener = ListenOn(socketPath is null ? new IPEndPoint(address!, Port) : new UnixDomainSocketEndPoint(socketPath));
            var port = (listener.LocalEndPoint as IPEndPoint)?.Port;
            mount = new VolumeBackupMount
            {
                ExportName = name,
                Uri = socketPath is null ? $"nbd://{FormatHost(address!)}:{port}/{name}" : $"nbd+unix:///{name}?socket={socketPath}",
                BackupId = BackupId,
                Repository = Repository,
                Size = export.Size,
                ReadOnly = export.ReadOnly,
                ProcessId = Environment.ProcessId,
                Started = DateTime.UtcNow,
                Socket = socketPath,
                Address = address?.ToString(),
                Port = port,
                OverlayPath = overlay,
                LogPath = MountRegistry.LogPath(name),
            };
            MountRegistry.Write(mount);
            if (!background)
            {
                WriteObject(mount);
            }

            var log = mount.LogPath;
            var server = new NbdServer(export, name, line =>
            {
                var stamped = $"{DateTime.UtcNow:O} {line}";
                lock (this)
                {
                    File.AppendAllText(log, stamped + Environment.NewLine);
                }
            });
            server.RunAsync(listener, StopToken).GetAwaiter().GetResult();
        }
        finally
        {
            export.Dispose();
            if (mount is not null)
            {
                // In the background the overlay is Dismount-VolumeBackup's (it may be kept).
                MountRegistry.Clean(mount, keepOverlay: background);
            }
            else if (socketPath is not null && File.Exists(socketPath))
            {
                File.Delete(socketPath);
            }
        }

        StopToken.ThrowIfCancellationRequested();
    }

    private static System.Net.Sockets.Socket ListenOn(EndPoint endpoint)
    {
        try
        {
            return NbdServer.Listen(endpoint);
        }
        catch (Exception ex) when (ex is SocketException or IOException or UnauthorizedAccessException)
        {
            throw new BackupException(BackupErrorKind.InvalidOperation, "ListenFailed",
                $"The NBD server cannot listen on {endpoint}: {ex.Message}. Choose another -Port or -Socket (or stop what listens there).", endpoint.ToString(), ex);
        }
    }

    private static string FormatHost(IPAddress address) => address.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{address}]" : address.ToString();

    /// <summary>
    /// Starts this cmdlet with -Wait in a new pwsh, detached (its own session, no terminal, output
    /// to the export's log), and returns once that process has recorded its mount or has failed.
    /// </summary>
    private VolumeBackupMount StartInBackground(string name)
    {
        Directory.CreateDirectory(MountRegistry.Directory);
        var log = MountRegistry.LogPath(name);
        File.WriteAllText(log, string.Empty);
        var manifest = Path.Combine(MyInvocation.MyCommand.Module.ModuleBase, "BlockBackup.psd1");
        var arguments = new List<string> { "Import-Module", Quote(manifest), ";", "Mount-VolumeBackup", "-Repository", Quote(Repository), "-BackupId", Quote(BackupId.ToString()), "-ExportName", Quote(name), "-Wait", "-ErrorAction", "Stop" };
        void Add(string parameter, string? value)
        {
            if (value is not null)
            {
                arguments.Add(parameter);
                arguments.Add(Quote(value));
            }
        }

        Add("-Socket", Socket is null ? null : ResolvePath(Socket));
        Add("-Listen", Listen);
        Add("-Port", Listen is null ? null : Port.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Add("-OverlayPath", OverlayPath is null ? null : ResolvePath(OverlayPath));
        Add("-CephConfig", CephConfig is null ? null : ResolvePath(CephConfig));
        Add("-CephUser", CephUser);
        Add("-CephKeyring", CephKeyring is null ? null : ResolvePath(CephKeyring));
        if (Writable)
        {
            arguments.Add("-Writable");
        }

        if (Listen is not null)
        {
            arguments.Add("-WarningAction");
            arguments.Add("SilentlyContinue"); // warned here already
        }

        // setsid: a session of its own, so the terminal's hangup or Ctrl+C does not reach it;
        // sh redirects its output to the log, so it holds none of this session's pipes open.
        var info = new ProcessStartInfo("setsid") { UseShellExecute = false, WorkingDirectory = SessionState.Path.CurrentFileSystemLocation.Path };
        foreach (var a in new[] { "sh", "-c", "exec \"$@\" </dev/null >>\"$BB_MOUNT_LOG\" 2>&1", "sh" }.Concat(PwshCommand()).Concat(["-NoProfile", "-NonInteractive", "-Command", string.Join(' ', arguments)]))
        {
            info.ArgumentList.Add(a);
        }

        info.Environment["BB_MOUNT_LOG"] = log;
        info.Environment[BackgroundVariable] = "1";
        // The server's garbage is large buffers the GC otherwise lets pile up: over a 2 GiB
        // nbdcopy its peak RSS was 600 MB without this and 340 MB with it (pwsh alone: 140 MB),
        // at the same throughput. A setting of the caller's own wins.
        if (Environment.GetEnvironmentVariable("DOTNET_GCConserveMemory") is null)
        {
            info.Environment["DOTNET_GCConserveMemory"] = "7";
        }
        using var process = Process.Start(info) ?? throw new BackupException(BackupErrorKind.InvalidOperation, "MountStartFailed", "pwsh could not be started for the mount's server.", name);
        // Wait for the documented outcome: the server's state file naming its process, or its exit.
        while (true)
        {
            if (MountRegistry.Read(name) is { } mount && mount.ProcessId == process.Id)
            {
                return mount;
            }

            if (process.WaitForExit(100))
            {
                if (MountRegistry.Read(name) is { } late && late.ProcessId == process.Id)
                {
                    return late; // recorded, then stopped at once: still what was mounted
                }

                var output = File.ReadAllText(log).Trim();
                throw new BackupException(BackupErrorKind.InvalidOperation, "MountFailed",
                    $"The server for backup {BackupId} ended before serving (exit code {process.ExitCode}): {(output.Length == 0 ? "no output" : output)} (log: {log})", name);
            }

            if (StopToken.IsCancellationRequested)
            {
                process.Kill(entireProcessTree: true);
                StopToken.ThrowIfCancellationRequested();
            }
        }
    }

    /// <summary>This session's pwsh: the executable, or the dotnet host and pwsh.dll when started as `dotnet pwsh`.</summary>
    private static IEnumerable<string> PwshCommand()
    {
        var host = Environment.ProcessPath!;
        if (Path.GetFileNameWithoutExtension(host) == "dotnet" && System.Reflection.Assembly.GetEntryAssembly()?.Location is { Length: > 0 } entry)
        {
            return [host, entry];
        }

        return [host];
    }

    private static string Quote(string value) => "'" + value.Replace("'", "''", StringComparison.Ordinal) + "'";
}
