using System.Security.Cryptography;
using System.Text;

namespace BlockBackup.Engine.Volumes;

/// <summary>
/// A stable VolumeId for a path: a name-based UUID (RFC 4122 version 5) of the resolved path, so
/// that every backup of the same file or device finds its previous backups without a database.
/// </summary>
public static class VolumeIdentity
{
    private static readonly Guid Namespace = new("6f1f3a1e-7b1c-5d2e-9a4b-b10cb0c0ffee");

    public static Guid ForPath(string path) => NameBased(Namespace, ResolvePath(path));

    /// <summary>Full path with every symlink resolved (/dev/vg/lv and /dev/mapper/vg-lv are one volume).</summary>
    public static string ResolvePath(string path)
    {
        var full = Path.GetFullPath(path);
        try
        {
            var target = File.ResolveLinkTarget(full, returnFinalTarget: true);
            return target?.FullName ?? full;
        }
        catch (IOException)
        {
            return full;
        }
    }

    internal static Guid NameBased(Guid ns, string name)
    {
        Span<byte> nsBytes = stackalloc byte[16];
        ns.TryWriteBytes(nsBytes, bigEndian: true, out _);
        var nameBytes = Encoding.UTF8.GetBytes(name);
        var input = new byte[16 + nameBytes.Length];
        nsBytes.CopyTo(input);
        nameBytes.CopyTo(input, 16);
        var hash = SHA1.HashData(input);
        hash[6] = (byte)((hash[6] & 0x0F) | 0x50);
        hash[8] = (byte)((hash[8] & 0x3F) | 0x80);
        return new Guid(hash.AsSpan(0, 16), bigEndian: true);
    }
}
