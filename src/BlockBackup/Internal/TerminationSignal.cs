using System.Collections.Concurrent;
using System.Runtime.InteropServices;

namespace BlockBackup.Commands;

/// <summary>
/// SIGTERM, as Ctrl+C. A scheduled backup is stopped by systemd (SIGTERM, then SIGKILL after
/// TimeoutStopSec, 90 s by default) or by kill; left to the runtime, SIGTERM ends the process at
/// once and leaves an incomplete backup, a held lock, a partial target without a word. While a
/// cmdlet of the module works, SIGTERM instead stops that work the way Ctrl+C does (its cleanup
/// runs, a partial restore target is reported) and then ends the process with the exit code of a
/// SIGTERM death (143), since whoever sent it wants the process gone, not the script to go on.
/// With no work running, SIGTERM keeps its default meaning.
/// </summary>
internal static class TerminationSignal
{
    /// <summary>How long the stopped work may take to clean up before the process ends anyway.</summary>
    private static readonly TimeSpan CleanupLimit = TimeSpan.FromSeconds(60);

    private static readonly ConcurrentDictionary<EngineCmdlet, int> Working = new();
    private static readonly object Gate = new();
    private static PosixSignalRegistration? _registration;
    private static int _terminating;

    /// <summary>Marks <paramref name="cmdlet"/>'s work as running until the result is disposed.</summary>
    public static IDisposable Running(EngineCmdlet cmdlet)
    {
        Register();
        Working.AddOrUpdate(cmdlet, 1, (_, n) => n + 1);
        return new Mark(cmdlet);
    }

    private static void Register()
    {
        if (_registration is not null || OperatingSystem.IsWindows())
        {
            return; // Windows sends no SIGTERM; a console close is CTRL_CLOSE_EVENT, which Ctrl+C handling does not see either
        }

        lock (Gate)
        {
            _registration ??= PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnTerminate);
        }
    }

    private static void OnTerminate(PosixSignalContext context)
    {
        var working = Working.Keys.ToList();
        if (working.Count == 0 || Interlocked.Exchange(ref _terminating, 1) != 0)
        {
            return; // nothing of ours runs (or a second SIGTERM): the default, the process ends now
        }

        context.Cancel = true;
        foreach (var cmdlet in working)
        {
            cmdlet.StopFromSignal();
        }

        // The process ends when the last stopped work has let go of everything (see Mark), or
        // after the limit if cleaning up hangs (a store that no longer answers).
        _ = Task.Run(async () =>
        {
            await Task.Delay(CleanupLimit).ConfigureAwait(false);
            Environment.Exit(143);
        });
    }

    /// <summary>Ends the process once a SIGTERM was taken over and no stopped work remains.</summary>
    private static void ExitIfTerminatedAndDone()
    {
        if (Volatile.Read(ref _terminating) == 1 && Working.IsEmpty)
        {
            // Here, on the thread that just finished the last cleanup, before the stopped
            // pipeline unwinds: otherwise pwsh ends the script by itself, with exit code 0.
            Environment.Exit(143);
        }
    }

    private sealed class Mark(EngineCmdlet cmdlet) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                while (Working.TryGetValue(cmdlet, out var n))
                {
                    if (n <= 1 ? Working.TryRemove(new KeyValuePair<EngineCmdlet, int>(cmdlet, n)) : Working.TryUpdate(cmdlet, n - 1, n))
                    {
                        break;
                    }
                }

                ExitIfTerminatedAndDone();
            }
        }
    }
}
