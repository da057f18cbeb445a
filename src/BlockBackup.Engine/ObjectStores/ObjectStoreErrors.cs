using System.Runtime.CompilerServices;
using BlockBackup.Engine.Errors;

// The S3 store lives in its own assembly (loaded into an isolated context with the AWS SDK) and
// shares the helpers below with the Swift store.
[assembly: InternalsVisibleTo("BlockBackup.ObjectStores.S3")]

namespace BlockBackup.Engine.ObjectStores;

/// <summary>
/// The errors object stores (S3, Swift) report, with stable ids. Each message names the store (its
/// description: kind, bucket or container, endpoint; never a secret), the object, and what to do.
/// </summary>
public static class ObjectStoreErrors
{
    public static BackupException AuthenticationFailed(string store, string hint, Exception? inner = null) =>
        new(BackupErrorKind.InvalidArgument, "ObjectStoreAuthenticationFailed",
            $"{store} refused the credentials: {hint}", null, inner);

    public static BackupException AccessDenied(string store, string operation, string? name, Exception? inner = null) =>
        new(BackupErrorKind.InvalidOperation, "ObjectStoreAccessDenied",
            $"{store} denied {operation}{Of(name)}: the credentials are valid but lack that permission; grant the user access to the bucket or container.", name, inner);

    public static BackupException ContainerNotFound(string store, string? name, Exception? inner = null) =>
        new(BackupErrorKind.NotFound, "ObjectStoreContainerNotFound",
            $"{store} does not exist{(name is null ? "" : $" (reading '{name}')")}: check the bucket or container name and the endpoint; it is created by the first backup written to it.", name, inner);

    public static BackupException Unreachable(string store, string operation, string? name, int attempts, bool write, Exception inner) =>
        new(write ? BackupErrorKind.WriteError : BackupErrorKind.ReadError, "ObjectStoreUnreachable",
            $"{store} could not be reached for {operation}{Of(name)} ({Attempts(attempts)}): {Describe(inner)}. Check the endpoint URL, the network and that the service is running, then run the command again.", name, inner);

    public static BackupException ReadBroken(string store, string name, long at, int resumptions, Exception inner) =>
        new(BackupErrorKind.ReadError, "ObjectStoreReadBroken",
            $"Reading '{name}' from {store} broke off at byte {at}{(resumptions > 0 ? $" (resumed {resumptions} times)" : "")}: {Describe(inner)}. Check the network and the service, then run the command again.", name, inner);

    public static BackupException RequestFailed(string store, string operation, string? name, int status, string? code, int attempts, bool write, Exception? inner = null) =>
        new(write ? BackupErrorKind.WriteError : BackupErrorKind.ReadError, "ObjectStoreRequestFailed",
            $"{store} answered HTTP {status}{(string.IsNullOrEmpty(code) ? "" : " " + code)} to {operation}{Of(name)} ({Attempts(attempts)}). "
            + (status is 429 or 498 or 503 ? "The service is throttling requests: lower the concurrency or try again later." :
               status >= 500 ? "The service is failing: check its health and try again later." :
               "The request was refused; check the store's configuration."), name, inner);

    public static BackupException ChecksumMismatch(string store, string name, string detail, bool write, Exception? inner = null) =>
        new(write ? BackupErrorKind.WriteError : BackupErrorKind.InvalidData, "ObjectChecksumMismatch",
            $"Object '{name}' in {store}: {detail}", name, inner);

    public static BackupException TooLarge(string store, string name, long length, long limit) =>
        new(BackupErrorKind.NotSupported, "ObjectTooLarge",
            $"Object '{name}' ({length} bytes) is larger than {store} accepts in one object ({limit} bytes); use a smaller object size.", name);

    public static BackupException EndpointNotFound(string store, string detail) =>
        new(BackupErrorKind.InvalidArgument, "ObjectStoreEndpointNotFound", $"{store}: {detail}");

    private static string Of(string? name) => name is null ? "" : $" of '{name}'";

    private static string Attempts(int attempts) => attempts == 1 ? "1 attempt" : $"{attempts} attempts";

    private static string Describe(Exception ex)
    {
        var messages = new List<string>();
        for (var e = ex; e is not null && messages.Count < 3; e = e.InnerException)
        {
            if (!messages.Contains(e.Message, StringComparer.Ordinal))
            {
                messages.Add(e.Message.TrimEnd('.'));
            }
        }

        return string.Join(": ", messages);
    }
}
