using System.Globalization;
using BlockBackup.Engine.Errors;

namespace BlockBackup.Engine.Rbd.Librbd;

/// <summary>
/// One librados connection (rados_t) and its I/O contexts, one per pool and namespace. librados
/// handles are thread-safe; contexts live as long as the connection.
/// </summary>
internal sealed class RadosCluster : IDisposable
{
    private readonly Dictionary<(string Pool, string? Namespace), IntPtr> contexts = [];
    private IntPtr cluster;

    private RadosCluster(IntPtr cluster) => this.cluster = cluster;

    /// <summary>
    /// Connects with the given conf file, client id and keyring (paths only: no secret passes
    /// through here). <paramref name="timeout"/> bounds the mount and every monitor and OSD
    /// operation, since a cluster without quorum otherwise blocks a client forever.
    /// </summary>
    public static RadosCluster Connect(RbdConnection connection, TimeSpan timeout)
    {
        var who = $"the Ceph cluster ({(connection.ConfPath is null ? "default ceph.conf" : connection.ConfPath)}, client.{connection.ClientId ?? "admin"})";
        IntPtr handle;
        try
        {
            CephError.Check(CephNative.rados_create(out handle, connection.ClientId is null ? null : RbdNames.Validate(connection.ClientId, "client id")), "Creating a client of", who, described: true);
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            throw new BackupException(BackupErrorKind.NotSupported, "LibrbdMissing",
                "librados/librbd (Ceph's client libraries) are not installed: on Debian/Ubuntu apt-get install librbd1 (or ceph-common); on Windows install Ceph for Windows.", "librbd", ex);
        }

        try
        {
            if (connection.ConfPath is not null && !File.Exists(connection.ConfPath))
            {
                throw new BackupException(BackupErrorKind.NotFound, "CephConfigNotFound", $"The Ceph configuration file '{connection.ConfPath}' does not exist.", connection.ConfPath);
            }

            // Errors come back as return codes and become exceptions; nothing should be written
            // to the host's (PowerShell's) stderr from librados' own threads. Set before the conf
            // is read (reading it can already complain) and again after (the conf may set them).
            Quiet(handle, who);
            var read = CephNative.rados_conf_read_file(handle, connection.ConfPath);
            if (read < 0 && !(connection.ConfPath is null && read == -CephError.ENOENT))
            {
                CephError.Check(read, "Reading the configuration of", who, described: true);
            }

            CephError.Check(CephNative.rados_conf_parse_env(handle, null), "Reading CEPH_ARGS for", who, described: true);
            if (connection.KeyringPath is not null)
            {
                Set(handle, "keyring", connection.KeyringPath, who);
            }

            var seconds = Math.Max(1, (int)timeout.TotalSeconds).ToString(CultureInfo.InvariantCulture);
            Set(handle, "client_mount_timeout", seconds, who);
            Set(handle, "rados_mon_op_timeout", seconds, who);
            Set(handle, "rados_osd_op_timeout", seconds, who);
            Quiet(handle, who);
            // Bulk copies keep their own I/O depth: librbd's writeback cache would only add a
            // copy of every byte and a dirty-data limit in front of the OSDs.
            Set(handle, "rbd_cache", "false", who);
            // Diffs look at many objects; more of them at once (rbd's default is 10).
            Set(handle, "rbd_concurrent_management_ops", "32", who);
            // Without any monitor address librados falls back to a DNS SRV lookup and prints its
            // failure on the process's stderr whatever the log settings: say it ourselves, quietly.
            // (Old-style [mon.<id>] sections with "mon addr" still go through librados.)
            if (string.IsNullOrWhiteSpace(Get(handle, "mon_host")) && !DefinesMonitorSections(connection.ConfPath ?? "/etc/ceph/ceph.conf"))
            {
                throw new BackupException(BackupErrorKind.ResourceBusy, "CephConnectionFailed",
                    $"Cannot connect to {who}: no monitor address was found: set mon_host in the ceph.conf (-CephConfig) or CEPH_CONF (DNS SRV discovery of monitors is not used).", connection.ConfPath ?? "ceph.conf");
            }

            var connected = CephNative.rados_connect(handle);
            if (connected < 0)
            {
                // ENOENT here means no monitor address was found (not a missing image), ETIMEDOUT
                // none answered, EACCES/EPERM the key was refused: one id, the cause in the text.
                var errno = -connected;
                var cause = errno switch
                {
                    CephError.ENOENT => "no monitor address was found: set mon_host in the ceph.conf (-CephConfig) or CEPH_CONF",
                    CephError.ETIMEDOUT => $"no monitor answered within {seconds} s: are the monitors running and reachable from here?",
                    1 or 13 => "the monitors refused the client's key: check -CephUser and -CephKeyring",
                    _ => System.Runtime.InteropServices.Marshal.GetPInvokeErrorMessage(errno),
                };
                throw new BackupException(BackupErrorKind.ResourceBusy, "CephConnectionFailed", $"Cannot connect to {who}: {cause} (errno {errno}).", connection.ConfPath ?? "ceph.conf");
            }

            return new RadosCluster(handle);
        }
        catch
        {
            CephNative.rados_shutdown(handle);
            throw;
        }
    }

    private static bool DefinesMonitorSections(string confPath)
    {
        try
        {
            return File.Exists(confPath) && System.Text.RegularExpressions.Regex.IsMatch(File.ReadAllText(confPath), @"^\s*mon[ _]addr\s*=", System.Text.RegularExpressions.RegexOptions.Multiline);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return true; // unreadable here: let librados decide
        }
    }

    /// <summary>A configuration value ("" when unset or unknown).</summary>
    private static unsafe string Get(IntPtr handle, string option)
    {
        var buffer = stackalloc byte[4096];
        return CephNative.rados_conf_get(handle, option, buffer, 4096) == 0 ? new string((sbyte*)buffer) : string.Empty;
    }

    private static void Quiet(IntPtr handle, string who)
    {
        Set(handle, "log_to_stderr", "false", who);
        Set(handle, "err_to_stderr", "false", who);
        Set(handle, "log_to_file", "false", who);
    }

    private static void Set(IntPtr handle, string option, string value, string who) =>
        CephError.Check(CephNative.rados_conf_set(handle, option, value), $"Setting {option} for", who, described: true);

    /// <summary>The I/O context of a pool (and namespace), created on first use.</summary>
    public IntPtr IoContext(string pool, string? ns)
    {
        lock (contexts)
        {
            ObjectDisposedException.ThrowIf(cluster == IntPtr.Zero, this);
            if (contexts.TryGetValue((pool, ns), out var existing))
            {
                return existing;
            }

            CephError.Check(CephNative.rados_ioctx_create(cluster, pool, out var ioctx), "Opening pool", pool);
            if (ns is not null)
            {
                CephNative.rados_ioctx_set_namespace(ioctx, ns);
            }

            contexts[(pool, ns)] = ioctx;
            return ioctx;
        }
    }

    public void Dispose()
    {
        lock (contexts)
        {
            if (cluster == IntPtr.Zero)
            {
                return;
            }

            foreach (var ioctx in contexts.Values)
            {
                CephNative.rados_ioctx_destroy(ioctx);
            }

            contexts.Clear();
            CephNative.rados_shutdown(cluster);
            cluster = IntPtr.Zero;
        }
    }
}
