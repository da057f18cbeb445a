using System.Reflection;
using System.Runtime.InteropServices;

namespace BlockBackup.Engine.Rbd.Librbd;

/// <summary>
/// The C APIs of librados and librbd (include/rados/librados.h, include/rbd/librbd.h; stable
/// since Ceph 15). Every function returns 0 or a negative errno unless noted. Only what the
/// engine uses is declared; <see cref="Resolve"/> finds the versioned shared objects Ceph ships
/// (librados.so.2 and librbd.so.1; rados.dll and rbd.dll with Ceph for Windows).
/// </summary>
internal static unsafe partial class CephNative
{
    private const string Rados = "rados";
    private const string Rbd = "rbd";

    static CephNative() => NativeLibrary.SetDllImportResolver(typeof(CephNative).Assembly, Resolve);

    private static IntPtr Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath)
    {
        string[] candidates = name switch
        {
            Rados => OperatingSystem.IsWindows() ? ["librados.dll", "rados.dll"] : ["librados.so.2", "librados.so"],
            Rbd => OperatingSystem.IsWindows() ? ["librbd.dll", "rbd.dll"] : ["librbd.so.1", "librbd.so"],
            _ => [],
        };
        foreach (var candidate in candidates)
        {
            if (NativeLibrary.TryLoad(candidate, assembly, searchPath, out var handle))
            {
                return handle;
            }
        }

        return IntPtr.Zero; // the runtime's own probing, then DllNotFoundException
    }

    // ---- librados ----

    [LibraryImport(Rados, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int rados_create(out IntPtr cluster, string? id);

    [LibraryImport(Rados, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int rados_conf_read_file(IntPtr cluster, string? path);

    [LibraryImport(Rados, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int rados_conf_parse_env(IntPtr cluster, string? variable);

    [LibraryImport(Rados, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int rados_conf_set(IntPtr cluster, string option, string value);

    [LibraryImport(Rados, StringMarshalling = StringMarshalling.Utf8)]
    internal static unsafe partial int rados_conf_get(IntPtr cluster, string option, byte* buffer, nuint length);

    [LibraryImport(Rados)]
    internal static partial int rados_connect(IntPtr cluster);

    [LibraryImport(Rados)]
    internal static partial void rados_shutdown(IntPtr cluster);

    [LibraryImport(Rados, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int rados_ioctx_create(IntPtr cluster, string pool, out IntPtr ioctx);

    [LibraryImport(Rados)]
    internal static partial void rados_ioctx_destroy(IntPtr ioctx);

    [LibraryImport(Rados, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial void rados_ioctx_set_namespace(IntPtr ioctx, string? ns);

    // ---- librbd: images ----

    [StructLayout(LayoutKind.Sequential)]
    internal struct ImageSpec
    {
        public IntPtr Id;
        public IntPtr Name;
    }

    [LibraryImport(Rbd)]
    internal static partial int rbd_list2(IntPtr ioctx, ImageSpec* images, ref nuint maxImages);

    [LibraryImport(Rbd)]
    internal static partial void rbd_image_spec_list_cleanup(ImageSpec* images, nuint count);

    [LibraryImport(Rbd)]
    internal static partial void rbd_image_options_create(out IntPtr options);

    [LibraryImport(Rbd)]
    internal static partial void rbd_image_options_destroy(IntPtr options);

    /// <summary>Creates an image with the cluster's default format and features (rbd_default_features), as <c>rbd create</c> does.</summary>
    [LibraryImport(Rbd, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int rbd_create4(IntPtr ioctx, string name, ulong size, IntPtr options);

    [LibraryImport(Rbd, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int rbd_remove(IntPtr ioctx, string name);

    [LibraryImport(Rbd, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int rbd_open(IntPtr ioctx, string name, out IntPtr image, string? snapshot);

    [LibraryImport(Rbd, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int rbd_open_read_only(IntPtr ioctx, string name, out IntPtr image, string? snapshot);

    [LibraryImport(Rbd)]
    internal static partial int rbd_close(IntPtr image);

    [LibraryImport(Rbd)]
    internal static partial int rbd_get_size(IntPtr image, out ulong size);

    /// <summary>rbd_image_info_t: only the leading fields are read; the struct is sized generously.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct ImageInfo
    {
        public ulong Size;
        public ulong ObjectSize;
        public ulong ObjectCount;
        public int Order;
        public fixed byte Rest[256];
    }

    [LibraryImport(Rbd)]
    internal static partial int rbd_stat(IntPtr image, out ImageInfo info, nuint infoSize);

    [LibraryImport(Rbd)]
    internal static partial int rbd_resize(IntPtr image, ulong size);

    internal const ulong FeatureFastDiff = 1 << 4;
    internal const ulong FlagObjectMapInvalid = 1 << 0;
    internal const ulong FlagFastDiffInvalid = 1 << 1;

    [LibraryImport(Rbd)]
    internal static partial int rbd_get_features(IntPtr image, out ulong features);

    [LibraryImport(Rbd)]
    internal static partial int rbd_get_flags(IntPtr image, out ulong flags);

    [LibraryImport(Rbd)]
    internal static partial int rbd_flush(IntPtr image);

    // ---- librbd: snapshots ----

    [StructLayout(LayoutKind.Sequential)]
    internal struct SnapInfo
    {
        public ulong Id;
        public ulong Size;
        public IntPtr Name;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    /// <summary>Returns the number of snapshots, or -ERANGE with <paramref name="max"/> set to the count needed.</summary>
    [LibraryImport(Rbd)]
    internal static partial int rbd_snap_list(IntPtr image, SnapInfo* snaps, ref int max);

    [LibraryImport(Rbd)]
    internal static partial void rbd_snap_list_end(SnapInfo* snaps);

    [LibraryImport(Rbd)]
    internal static partial int rbd_snap_get_timestamp(IntPtr image, ulong snapId, out TimeSpec timestamp);

    [LibraryImport(Rbd, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int rbd_snap_create(IntPtr image, string name);

    [LibraryImport(Rbd, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int rbd_snap_remove(IntPtr image, string name);

    // ---- librbd: metadata ----

    [LibraryImport(Rbd, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int rbd_metadata_set(IntPtr image, string key, string value);

    [LibraryImport(Rbd, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int rbd_metadata_remove(IntPtr image, string key);

    /// <summary>Keys and values as NUL-separated lists; -ERANGE with the lengths needed when a buffer is short.</summary>
    [LibraryImport(Rbd, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int rbd_metadata_list(IntPtr image, string start, ulong max, byte* keys, ref nuint keysLength, byte* values, ref nuint valuesLength);

    // ---- librbd: diff and asynchronous I/O ----

    [LibraryImport(Rbd, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int rbd_diff_iterate2(IntPtr image, string? fromSnapshot, ulong offset, ulong length, byte includeParent, byte wholeObject,
        delegate* unmanaged<ulong, nuint, int, IntPtr, int> callback, IntPtr argument);

    [LibraryImport(Rbd)]
    internal static partial int rbd_aio_create_completion(IntPtr argument, delegate* unmanaged<IntPtr, IntPtr, void> callback, out IntPtr completion);

    [LibraryImport(Rbd)]
    internal static partial nint rbd_aio_get_return_value(IntPtr completion);

    [LibraryImport(Rbd)]
    internal static partial void rbd_aio_release(IntPtr completion);

    [LibraryImport(Rbd)]
    internal static partial int rbd_aio_read(IntPtr image, ulong offset, nuint length, byte* buffer, IntPtr completion);

    [LibraryImport(Rbd)]
    internal static partial int rbd_aio_write(IntPtr image, ulong offset, nuint length, byte* buffer, IntPtr completion);

    [LibraryImport(Rbd)]
    internal static partial int rbd_aio_write_zeroes(IntPtr image, ulong offset, nuint length, IntPtr completion, int zeroFlags, int opFlags);
}
