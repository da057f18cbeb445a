using System.Collections.Concurrent;
using System.Diagnostics.Tracing;

/// <summary>
/// BBK_ALLOC=1: samples the runtime's allocation ticks (one per ~100 KB allocated) by type and
/// size and prints the top ones to stderr at exit, to find what makes a peak RSS grow (a
/// per-object buffer allocated instead of reused shows up as a large-object row).
/// </summary>
internal sealed class AllocationSampler : EventListener
{
    private const EventKeywords GcKeyword = (EventKeywords)0x1;
    private readonly ConcurrentDictionary<string, long> _ticks = new();

    public static AllocationSampler? FromEnvironment() =>
        Environment.GetEnvironmentVariable("BBK_ALLOC") is { Length: > 0 } ? new AllocationSampler() : null;

    protected override void OnEventSourceCreated(EventSource source)
    {
        if (source.Name == "Microsoft-Windows-DotNETRuntime")
        {
            EnableEvents(source, EventLevel.Verbose, GcKeyword);
        }
    }

    protected override void OnEventWritten(EventWrittenEventArgs e)
    {
        if (e.EventName is not { } name || !name.StartsWith("GCAllocationTick", StringComparison.Ordinal) || e.Payload is null || e.PayloadNames is null)
        {
            return;
        }

        var type = e.Payload[e.PayloadNames.IndexOf("TypeName")]?.ToString() ?? "?";
        var size = e.PayloadNames.IndexOf("ObjectSize") is >= 0 and var i ? Convert.ToInt64(e.Payload[i], System.Globalization.CultureInfo.InvariantCulture) : 0;
        _ticks.AddOrUpdate(size >= 85_000 ? $"{type} of {size} bytes (large object heap)" : $"{type} (small)", 1, (_, n) => n + 1);
    }

    public void Report()
    {
        Console.Error.WriteLine("allocation ticks (~100 KB each), top 20:");
        foreach (var (what, ticks) in _ticks.OrderByDescending(t => t.Value).Take(20))
        {
            Console.Error.WriteLine($"{ticks,8}  {what}");
        }
    }
}
