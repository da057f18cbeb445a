namespace BlockBackup.Engine.Errors;

/// <summary>
/// An operation stopped as asked (Ctrl+C, Stop-Job, SIGTERM) that left something the user must
/// know about, such as a restore target written in place and now partial. The cmdlet layer
/// shows <see cref="Exception.Message"/> even though the pipeline is stopping.
/// </summary>
public sealed class OperationStoppedException(string message, Exception inner, CancellationToken token)
    : OperationCanceledException(message, inner, token);
