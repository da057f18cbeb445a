using System.Runtime.InteropServices;
using BlockBackup.Engine.Errors;

namespace BlockBackup.Engine.Rbd.Librbd;

/// <summary>Turns librados/librbd's negative errno results into engine errors that say what was being done to what.</summary>
internal static class CephError
{
    internal const int ENOENT = 2;
    internal const int EEXIST = 17;
    internal const int EBUSY = 16;
    internal const int ERANGE = 34;
    internal const int ETIMEDOUT = 110;

    /// <summary>Returns <paramref name="result"/> when it is not an error. <paramref name="target"/> is a name, quoted in the message, unless <paramref name="described"/>.</summary>
    public static int Check(int result, string what, string target, bool described = false)
    {
        if (result < 0)
        {
            throw Error(result, what, target, described);
        }

        return result;
    }

    public static BackupException Error(long result, string what, string target, bool described = false)
    {
        var errno = (int)-result;
        var text = $"{what} {(described ? target : $"'{target}'")} failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})";
        return errno switch
        {
            ENOENT => new BackupException(BackupErrorKind.NotFound, "RbdNotFound", text, target),
            EEXIST => new BackupException(BackupErrorKind.InvalidOperation, "RbdAlreadyExists", text, target),
            EBUSY => new BackupException(BackupErrorKind.ResourceBusy, "RbdBusy", text + "; another client still has the image open", target),
            ETIMEDOUT => new BackupException(BackupErrorKind.ResourceBusy, "RbdTimeout", text + "; is the Ceph cluster reachable and healthy?", target),
            1 or 13 => new BackupException(BackupErrorKind.InvalidOperation, "RbdAccessDenied", text + "; check the Ceph user's caps and keyring", target),
            _ => new BackupException(BackupErrorKind.WriteError, "RbdCommandFailed", text, target),
        };
    }
}
