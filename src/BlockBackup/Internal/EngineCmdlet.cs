using System.Collections.Concurrent;
using System.Management.Automation;
using BlockBackup.Engine;
using BlockBackup.Engine.Errors;

namespace BlockBackup.Commands;

/// <summary>
/// Base of the module's cmdlets: runs engine work on a worker thread while the pipeline thread
/// relays its progress (PowerShell's Write* methods are only legal on the pipeline thread),
/// cancels it from StopProcessing (Ctrl+C, Stop-Job), and turns engine failures into
/// ErrorRecords with the engine's stable error ids.
/// </summary>
public abstract class EngineCmdlet : PSCmdlet, IDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private int _progressId = 1;

    protected CancellationToken StopToken => _stop.Token;

    protected override void StopProcessing() => _stop.Cancel();

    /// <summary>Asks every running cmdlet of the module to stop, as Ctrl+C would (see <see cref="TerminationSignal"/>).</summary>
    internal void StopFromSignal() => _stop.Cancel();

    /// <summary>Resolves a path against the current PowerShell location (PSDrives, relative paths).</summary>
    protected string ResolvePath(string path) => SessionState.Path.GetUnresolvedProviderPathFromPSPath(path);

    /// <summary>
    /// Runs <paramref name="work"/> on a worker thread and relays its progress as Write-Progress
    /// records (with rate and time left) until it finishes. Exceptions surface here.
    /// </summary>
    protected T RunWithProgress<T>(string activity, Func<IProgress<OperationProgress>, CancellationToken, T> work) =>
        RunWithProgress(activity, (progress, _, token) => work(progress, token));

    /// <summary>As above; the work also gets a log whose lines become -Verbose records (the engine calls it from its own threads).</summary>
    protected T RunWithProgress<T>(string activity, Func<IProgress<OperationProgress>, Action<string>, CancellationToken, T> work)
    {
        var id = _progressId++;
        var queue = new BlockingCollection<object>();
        var progress = new QueueProgress(queue);
        void Log(string line) => progress.Add(line);
        var task = Task.Run(() =>
        {
            // While the work runs, SIGTERM (systemd stopping the unit, kill) stops it as Ctrl+C
            // does, and the process ends once it has cleaned up.
            using var running = TerminationSignal.Running(this);
            try
            {
                return work(progress, Log, _stop.Token);
            }
            catch (OperationStoppedException stopped)
            {
                // Told here, before the work counts as ended: after Ctrl+C the pipeline thread
                // may already be gone, and after SIGTERM the process ends right after this.
                ShowStopNote(stopped);
                throw;
            }
            finally
            {
                queue.CompleteAdding();
            }
        });

        var clock = System.Diagnostics.Stopwatch.StartNew();
        var shown = false;
        try
        {
            var waitReported = false;
            foreach (var item in queue.GetConsumingEnumerable())
            {
                if (item is string line)
                {
                    WriteVerbose(line);
                    continue;
                }

                var report = (OperationProgress)item;
                if (report.Phase == OperationPhase.WaitingForLock && !waitReported)
                {
                    WriteVerbose(report.Activity + ".");
                    waitReported = true;
                }

                WriteProgress(ToRecord(id, activity, report, clock.Elapsed));
                shown = true;
            }

            return task.GetAwaiter().GetResult();
        }
        catch when (!task.IsCompleted)
        {
            // The pipeline is being stopped (WriteProgress/WriteVerbose threw PipelineStoppedException)
            // or failed here while the work still runs: the work must have ended, its lock and
            // in-flight record released and its cleanup done, before this cmdlet reports the stop,
            // so that what a stopped backup leaves is decided when Stop() returns, not a moment later.
            _stop.Cancel();
            try
            {
                task.Wait();
            }
            catch (AggregateException)
            {
                // The work's own outcome (cancelled, as asked; a stop note is already shown) is not what is being reported.
            }

            throw;
        }
        finally
        {
            if (shown)
            {
                WriteProgress(new ProgressRecord(id, activity, "Done") { RecordType = ProgressRecordType.Completed });
            }
        }
    }

    /// <summary>
    /// The status line is what PowerShell's default Minimal progress view shows, so it carries the
    /// essentials ("Reading: 123 MiB of 300 MiB, 9.3 MiB/s"); the engine's detail goes below it.
    /// </summary>
    private static ProgressRecord ToRecord(int id, string activity, OperationProgress p, TimeSpan elapsed)
    {
        if (p.Phase == OperationPhase.WaitingForLock)
        {
            return new ProgressRecord(id, activity, $"Waiting for a lock: {p.BytesDone} s of {p.BytesTotal} s") { CurrentOperation = p.Activity };
        }

        var status = p.BytesTotal > 0 ? $"{p.Phase}: {Units.Size(p.BytesDone)} of {Units.Size(p.BytesTotal)}" : p.Phase.ToString();
        var record = new ProgressRecord(id, activity, status);
        if (!string.IsNullOrEmpty(p.Activity))
        {
            record.CurrentOperation = p.Activity;
        }

        if (p.BytesTotal > 0)
        {
            record.PercentComplete = (int)Math.Clamp(100 * p.BytesDone / p.BytesTotal, 0, 100);
            var rate = p.BytesDone / Math.Max(elapsed.TotalSeconds, 0.001);
            if (p.BytesDone > 0 && rate > 0)
            {
                record.SecondsRemaining = (int)Math.Min(int.MaxValue, (p.BytesTotal - p.BytesDone) / rate);
                record.StatusDescription += $", {Units.Size((long)rate)}/s";
            }
        }

        return record;
    }

    /// <summary>Maps an engine failure to an ErrorRecord: stable id, category, target.</summary>
    internal static ErrorRecord ToErrorRecord(BackupException ex) =>
        new(ex, ex.ErrorId, Category(ex.Kind), ex.Target);

    internal static ErrorCategory Category(BackupErrorKind kind) => kind switch
    {
        BackupErrorKind.InvalidArgument => ErrorCategory.InvalidArgument,
        BackupErrorKind.NotFound => ErrorCategory.ObjectNotFound,
        BackupErrorKind.InvalidData => ErrorCategory.InvalidData,
        BackupErrorKind.ResourceBusy => ErrorCategory.ResourceBusy,
        BackupErrorKind.InvalidOperation => ErrorCategory.InvalidOperation,
        BackupErrorKind.NotSupported => ErrorCategory.NotImplemented,
        BackupErrorKind.WriteError => ErrorCategory.WriteError,
        BackupErrorKind.ReadError => ErrorCategory.ReadError,
        _ => ErrorCategory.NotSpecified,
    };

    /// <summary>
    /// Runs the work for one pipeline item: engine failures become non-terminating errors (the
    /// next item proceeds); a stop request ends the pipeline.
    /// </summary>
    protected void ForItem(Action action)
    {
        // The item's cleanup (a stopped first backup's repository directory) runs here, after
        // its work: SIGTERM waits for it too.
        using var running = TerminationSignal.Running(this);
        try
        {
            RunItem(action);
        }
        finally
        {
            if (!_stop.IsCancellationRequested)
            {
                AfterItem();
            }
        }
    }

    /// <summary>After each pipeline item, failed or not, on the pipeline thread: e.g. warnings the engine collected meanwhile.</summary>
    protected virtual void AfterItem()
    {
    }

    private void RunItem(Action action)
    {
        try
        {
            action();
        }
        catch (BackupException ex)
        {
            WriteError(ToErrorRecord(ex));
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
            throw new PipelineStoppedException();
        }
        catch (IOException ex) when (StorageFault.Classify(ex, "The operation could not write") is { } fault)
        {
            WriteError(ToErrorRecord(fault));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            WriteError(new ErrorRecord(ex, ex is UnauthorizedAccessException ? "AccessDenied" : "IOError",
                ex is UnauthorizedAccessException ? ErrorCategory.PermissionDenied : ErrorCategory.WriteError, null));
        }
    }

    /// <summary>
    /// What a stopped operation must still tell: its warning stream is closed once the pipeline
    /// stops, so it goes to the host, where Ctrl+C left the user.
    /// </summary>
    private void ShowStopNote(OperationStoppedException stopped)
    {
        try
        {
            Host?.UI?.WriteWarningLine(stopped.Message);
        }
        catch (Exception hostFailure) when (hostFailure is PipelineStoppedException or InvalidOperationException or NotImplementedException or IOException)
        {
            // No host to tell (a hosted runspace without UI); the exception still says it.
        }
    }

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>PowerShell disposes a cmdlet when its pipeline ends; derived cmdlets release what they hold.</summary>
    protected virtual void Dispose(bool disposing)
    {
        if (disposing)
        {
            _stop.Dispose();
        }
    }

    /// <summary>Progress reports and log lines, in order, for the pipeline thread.</summary>
    private sealed class QueueProgress(BlockingCollection<object> queue) : IProgress<OperationProgress>
    {
        public void Report(OperationProgress value) => Add(value);

        public void Add(object value)
        {
            try
            {
                queue.TryAdd(value);
            }
            catch (InvalidOperationException)
            {
                // The operation already finished; a late report has nowhere to go.
            }
        }
    }
}
