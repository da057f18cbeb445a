using BlockBackup.Engine.Errors;

namespace BlockBackup.Engine.ObjectStores;

/// <summary>The object-name rules every store enforces before touching anything.</summary>
public static class ObjectNames
{
    /// <summary>
    /// Refuses names that are empty, absolute, contain "." or ".." segments, empty segments,
    /// backslashes or control characters: such a name could address something outside the store.
    /// </summary>
    public static string Validate(string name, string store)
    {
        if (IsInvalid(name))
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidObjectName",
                $"'{name}' is not a valid object name in {store}: names are relative, '/'-separated, without '.', '..' or empty parts.", name);
        }

        return name;
    }

    /// <summary>The test <see cref="Validate"/> applies, without throwing.</summary>
    public static bool IsInvalid(string name) =>
        string.IsNullOrEmpty(name) || name[0] == '/' || name.Contains('\\', StringComparison.Ordinal)
        || name.Any(char.IsControl) || name.Split('/').Any(part => part is "" or "." or "..");

    public static BackupException NotFound(string name, string store) =>
        new(BackupErrorKind.NotFound, "ObjectNotFound", $"Object '{name}' does not exist in {store}.", name);

    public static BackupException Exists(string name, string store) =>
        new(BackupErrorKind.InvalidOperation, "ObjectExists", $"Object '{name}' already exists in {store}; it is never replaced.", name);

    public static BackupException ShortContent(string name, long expected, long actual) =>
        new(BackupErrorKind.InvalidArgument, "ObjectLengthMismatch", $"Object '{name}': {actual} bytes were given where {expected} were announced; nothing was stored.", name);
}
