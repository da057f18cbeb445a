using Newtonsoft.Json;
using Newtonsoft.Json.Converters;

namespace BlockBackup.Engine.Errors;

/// <summary>
/// What kind of failure an engine error is. The cmdlet layer maps it to a PowerShell
/// ErrorCategory, so it describes the cause, not the operation.
/// </summary>
[JsonConverter(typeof(StringEnumConverter))]
public enum BackupErrorKind
{
    InvalidArgument,
    NotFound,
    /// <summary>Metadata, hash list or object data that is damaged, hostile or inconsistent.</summary>
    InvalidData,
    /// <summary>A volume in use, or a repository lock held by another process.</summary>
    ResourceBusy,
    /// <summary>The operation is refused in the current state (dependents exist, target holds data…).</summary>
    InvalidOperation,
    NotSupported,
    WriteError,
    ReadError,
}

/// <summary>
/// An engine failure with a stable identifier (used as the PowerShell FullyQualifiedErrorId)
/// and the object it concerns (a path, an object name, a backup id).
/// </summary>
public class BackupException : Exception
{
    public BackupException(BackupErrorKind kind, string errorId, string message, object? target = null, Exception? inner = null)
        : base(message, inner)
    {
        Kind = kind;
        ErrorId = errorId;
        Target = target;
    }

    public BackupErrorKind Kind { get; }

    /// <summary>Stable, documented identifier such as "BackupHasDependents".</summary>
    public string ErrorId { get; }

    public object? Target { get; }
}
