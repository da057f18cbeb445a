using Newtonsoft.Json;
using Newtonsoft.Json.Converters;

namespace BlockBackup.Engine;

[JsonConverter(typeof(StringEnumConverter))]
public enum OperationPhase
{
    Preparing,
    /// <summary>Another operation holds the volume's repository lock (BytesDone/BytesTotal: seconds waited / the timeout).</summary>
    WaitingForLock,
    Reading,
    Writing,
    Restoring,
    Verifying,
    Committing,
    Deleting,
}

/// <summary>A progress report: the phase, bytes done out of bytes in total, and what is being worked on.</summary>
public readonly record struct OperationProgress(OperationPhase Phase, long BytesDone, long BytesTotal, string Activity);

/// <summary>Reports progress at most every <see cref="Interval"/>, so callers may report per block for free.</summary>
internal sealed class ProgressThrottle(IProgress<OperationProgress>? sink, OperationPhase phase, long total, string activity)
{
    public static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(200);

    private long _done;
    private long _lastTicks;

    public void Add(long bytes)
    {
        var done = Interlocked.Add(ref _done, bytes);
        if (sink is null)
        {
            return;
        }

        var now = Environment.TickCount64;
        var last = Interlocked.Read(ref _lastTicks);
        if (now - last >= Interval.TotalMilliseconds && Interlocked.CompareExchange(ref _lastTicks, now, last) == last)
        {
            sink.Report(new OperationProgress(phase, done, total, activity));
        }
    }

    public void Complete() => sink?.Report(new OperationProgress(phase, total, total, activity));
}
