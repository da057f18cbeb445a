using System.Diagnostics;
using System.Text.RegularExpressions;
using BlockBackup.Engine.Operations;
using BlockBackup.Engine.Repository;
using Xunit;
using Xunit.Abstractions;

namespace BlockBackup.Engine.Tests;

/// <summary>
/// The crash and fault tests run one after another: their kills are timed and their probes
/// count system calls, which other crash tests running beside them on two cores would disturb.
/// </summary>
[CollectionDefinition(Name)]
public sealed class CrashCollection
{
    public const string Name = "Crash suite";
}

/// <summary>
/// What a crash run did, counted: every kill, where it landed, every check that passed. Printed
/// line by line and as one summary line, so a run that silently did nothing is visible.
/// </summary>
internal sealed class CrashTally
{
    private readonly List<string> _order = [];
    private readonly Dictionary<string, int> _counts = new(StringComparer.Ordinal);

    public List<string> Unclear { get; } = [];

    public void Add(string key, int n = 1)
    {
        if (!_counts.ContainsKey(key))
        {
            _order.Add(key);
            _counts[key] = 0;
        }

        _counts[key] += n;
    }

    public int this[string key] => _counts.GetValueOrDefault(key);

    public IEnumerable<string> Lines() => _order.Select(k => $"{k} = {_counts[k]}").Concat(Unclear.Select(u => "unclear: " + u));

    public string Summary(string suite) =>
        $"CRASH-SUITE {suite}: " + string.Join(" ", _order.Select(k => $"{k}={_counts[k]}")) + $" unclear={Unclear.Count}";
}

/// <summary>One system call of the process under test, as strace logged it.</summary>
/// <param name="Syscall">Its name (rename, openat, …).</param>
/// <param name="Ordinal">Its number among this thread's calls of the same system call, from 1: what strace's <c>when=</c> counts (per syscall and per tracee).</param>
/// <param name="Line">The logged line (arguments with fd paths, from -y).</param>
internal sealed record StraceCall(string Syscall, int Ordinal, string Line)
{
    /// <summary>The call did not return: it is where the process was killed.</summary>
    public bool DidNotReturn => Line.Contains("<unfinished ...>", StringComparison.Ordinal) || Line.TrimEnd().EndsWith("= ?", StringComparison.Ordinal);

    private static readonly Regex Entry = new(@"^(?<tid>\d+)\s+(?<sc>[a-z_0-9]+)\(", RegexOptions.Compiled);

    /// <summary>
    /// The calls of the process's main thread (the one that did the execve), in order. The
    /// operations run with one worker, so every repository call is made there, in a fixed order.
    /// </summary>
    public static List<StraceCall> MainThread(string logPath, bool firstIsMain = false)
    {
        var calls = new List<StraceCall>();
        var ordinals = new Dictionary<string, int>(StringComparer.Ordinal);
        string? main = null;
        foreach (var line in File.ReadLines(logPath))
        {
            var m = Entry.Match(line);
            if (!m.Success)
            {
                continue; // "<... resumed>", "+++ killed +++" and signal lines
            }

            var tid = m.Groups["tid"].Value;
            var sc = m.Groups["sc"].Value;
            main ??= sc == "execve" || firstIsMain ? tid : null;
            if (tid != main)
            {
                continue;
            }

            ordinals[sc] = ordinals.GetValueOrDefault(sc) + 1;
            calls.Add(new StraceCall(sc, ordinals[sc], line));
        }

        return calls;
    }
}

/// <summary>
/// A system call to kill the process at, found in a probe run's trace (so the suite follows
/// what this .NET really calls: rename or link, openat, pwrite64…).
/// </summary>
/// <param name="Name">Short name for the counts and messages.</param>
/// <param name="Phase">The phase it lands in (objects, sha256file, metadata commit, listing cache, lock…).</param>
/// <param name="Commits">For backups: whether a kill there must leave the new backup available (the metadata is in place), not, or either.</param>
/// <param name="Locate">Finds the call in the probe's main-thread calls.</param>
/// <param name="IsTarget">Recognises the call itself (checked again on the line the kill landed on).</param>
/// <param name="File">
/// For a file known before the run (an earlier backup's hash list): only calls on it are counted
/// (strace -P), so the count does not depend on how many files other steps open (the in-use
/// check opens one directory per process on the machine).
/// </param>
internal sealed record KillPoint(string Name, string Phase, bool? Commits, Func<List<StraceCall>, StraceCall?> Locate, Func<StraceCall, bool> IsTarget, Func<CrashLab, string>? File = null)
{
    /// <summary>The <paramref name="occurrence"/>-th <paramref name="syscall"/> on the file <paramref name="file"/> names.</summary>
    public static KillPoint OnFile(string name, string phase, bool? commits, string syscall, Func<CrashLab, string> file, int occurrence = 1) =>
        new(name, phase, commits, _ => new StraceCall(syscall, occurrence, string.Empty), c => c.Syscall == syscall, file);

    /// <summary>What makes a file appear under its final name: .NET renames, or links when create-only.</summary>
    public static readonly string[] Publish = ["rename", "renameat", "renameat2", "link", "linkat"];

    public static KillPoint At(string name, string phase, bool? commits, string[] syscalls, string pattern, int occurrence = 1)
    {
        var regex = new Regex(pattern, RegexOptions.CultureInvariant);
        bool Target(StraceCall c) => syscalls.Contains(c.Syscall) && regex.IsMatch(c.Line);
        return new(name, phase, commits, calls => calls.Where(Target).Skip(occurrence - 1).FirstOrDefault(), Target);
    }

    public static KillPoint At(string name, string phase, bool? commits, string syscall, string pattern, int occurrence = 1) =>
        At(name, phase, commits, [syscall], pattern, occurrence);

    /// <summary>The last matching call before the first call matching the anchor (e.g. the fsync of a file before its rename).</summary>
    public static KillPoint Before(string name, string phase, bool? commits, string[] syscalls, string pattern, string[] anchorSyscalls, string anchorPattern) =>
        Relative(name, phase, commits, syscalls, pattern, anchorSyscalls, anchorPattern, (calls, i, target) => calls.Take(i).LastOrDefault(target));

    /// <summary>The first matching call after the first call matching the anchor.</summary>
    public static KillPoint After(string name, string phase, bool? commits, string[] syscalls, string pattern, string[] anchorSyscalls, string anchorPattern) =>
        Relative(name, phase, commits, syscalls, pattern, anchorSyscalls, anchorPattern, (calls, i, target) => calls.Skip(i + 1).FirstOrDefault(target));

    private static KillPoint Relative(string name, string phase, bool? commits, string[] syscalls, string pattern, string[] anchorSyscalls, string anchorPattern,
        Func<List<StraceCall>, int, Func<StraceCall, bool>, StraceCall?> pick)
    {
        var regex = new Regex(pattern, RegexOptions.CultureInvariant);
        var anchor = new Regex(anchorPattern, RegexOptions.CultureInvariant);
        bool Target(StraceCall c) => syscalls.Contains(c.Syscall) && regex.IsMatch(c.Line);
        return new(name, phase, commits, calls =>
        {
            var i = calls.FindIndex(c => anchorSyscalls.Contains(c.Syscall) && anchor.IsMatch(c.Line));
            return i < 0 ? null : pick(calls, i, Target);
        }, Target);
    }
}

/// <summary>
/// A repository with earlier backups whose sources' hashes are known, and the checks every kill
/// is followed by: every earlier backup restores byte-identically, nothing half-made lists as
/// available, the next backup of the volume takes the dead holder's lock at once, and cleanup
/// leaves exactly the files (and directories) there were before.
/// </summary>
internal sealed class CrashLab : IDisposable
{
    /// <summary>Everything the probe traces: each system call a kill point may name, and execve to find the main thread.</summary>
    private const string ProbeSet = "execve,openat,write,pwrite64,fsync,fdatasync,syncfs,ftruncate,fallocate,rename,renameat,renameat2,link,linkat,unlink,unlinkat,rmdir,mkdir,flock";

    private readonly ITestOutputHelper _output;
    private readonly Dictionary<Guid, string> _expected = new();
    private SortedDictionary<string, string> _baseline = new(StringComparer.Ordinal);
    private int _runs;

    public CrashLab(ITestOutputHelper output, long volumeSize, int seed)
    {
        _output = output;
        // Failing fast matters more than patience here: no check may wait for a lock at all.
        S.Repository.LockTimeout = TimeSpan.FromSeconds(10);
        VolumeA = S.MixedVolume("a.img", volumeSize, seed);
        VolumeB = S.MixedVolume("b.img", 1 << 20, seed + 1);
        Random = new Random(seed);
    }

    public Scratch S { get; } = new();
    public CrashTally Tally { get; } = new();
    public Random Random { get; }

    /// <summary>The volume every killed operation works on.</summary>
    public string VolumeA { get; }

    /// <summary>Another volume, with a backup that must never be touched.</summary>
    public string VolumeB { get; }

    public IReadOnlyDictionary<Guid, string> Expected => _expected;

    public void Log(string message) => _output.WriteLine(message);

    /// <summary>A backup made in this process, remembered with its source's hash.</summary>
    public Guid AddBackup(string volume, bool incremental = false)
    {
        var sha = Scratch.Sha(volume);
        var id = S.Backup(volume, incremental).Backup.Id;
        _expected[id] = sha;
        return id;
    }

    /// <summary>What "exactly as before" means from now on.</summary>
    public void TakeBaseline() => _baseline = Tree();

    /// <summary>
    /// A backup of <paramref name="volume"/> by bbk. One worker makes every repository call on
    /// the main thread in a fixed order, which counting system calls needs; random kills use all cores.
    /// </summary>
    public static string[] BackupArgs(string volume, string repo, bool incremental, string compression = "zlib", bool oneWorker = true) =>
        [
            "backup", volume, repo, "--no-snapshot", "--compression", compression, "--object-size", "262144",
            .. oneWorker ? new[] { "--workers", "1" } : [], .. incremental ? new[] { "--incremental" } : [],
        ];

    /// <summary>A backup of volume A made here, to be removed by a killed bbk: not one of the earlier backups. Returns it and its source's hash.</summary>
    public (Guid Id, string Sha) RemovalTarget(long objectSize = 256 << 10)
    {
        var sha = Scratch.Sha(VolumeA);
        return (S.Backup(VolumeA, objectSize: objectSize).Backup.Id, sha);
    }

    /// <summary>How long the operation takes here, run to its end on a copy of the repository (random kills are spread over that time).</summary>
    public TimeSpan TimeOnCopy(Func<string, string, string[]> args)
    {
        var repo = S.PathOf($"timing-{++_runs}");
        var target = S.PathOf($"timing-{_runs}.img");
        Assert.Equal(0, Shell.Run("cp", "-a", S.RepoPath, repo).Code);
        try
        {
            var clock = Stopwatch.StartNew();
            using var child = Bbk.Start(args(repo, target));
            var output = child.StandardOutput.ReadToEndAsync();
            var errors = child.StandardError.ReadToEndAsync();
            child.WaitForExit();
            Assert.True(child.ExitCode == 0, $"the timing run failed: {output.Result} {errors.Result}");
            Log($"bbk {args(repo, target)[0]} takes {clock.Elapsed.TotalMilliseconds:F0} ms here");
            return clock.Elapsed;
        }
        finally
        {
            Directory.Delete(repo, recursive: true);
            File.Delete(target);
        }
    }

    /// <summary>A file that is not in the baseline has appeared in the repository (an object or a temporary, not the in-flight record).</summary>
    public bool NewObjectAppeared()
    {
        var options = new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 };
        return Directory.EnumerateFiles(S.RepoPath, "*", options)
            .Select(f => Path.GetRelativePath(S.RepoPath, f))
            .Any(f => !f.StartsWith(".blockbackup", StringComparison.Ordinal) && !f.EndsWith(ContainerSummaryName, StringComparison.Ordinal) && !_baseline.ContainsKey(f));
    }

    private const string ContainerSummaryName = "blockbackup.json";

    // ---- killing ----------------------------------------------------------------------------

    /// <summary>
    /// Runs bbk and kills it (SIGKILL) <paramref name="delay"/> after <paramref name="anchor"/>
    /// first holds (or after the start). Returns whether the kill met a running process; a
    /// process that ended first must have succeeded.
    /// </summary>
    public bool RunAndKill(string[] args, TimeSpan delay, Func<bool>? anchor = null)
    {
        Tally.Add("kills.random.attempted");
        using var child = Bbk.Start(args);
        var stdout = child.StandardOutput.ReadToEndAsync();
        var stderr = child.StandardError.ReadToEndAsync();
        var clock = Stopwatch.StartNew();
        while (anchor is not null && !anchor() && !child.HasExited)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"bbk {args[0]} never reached the point to be killed after");
            Thread.Sleep(2);
        }

        var killed = false;
        if (!child.WaitForExit(delay))
        {
            try
            {
                child.Kill();
                killed = true;
            }
            catch (InvalidOperationException)
            {
                // It ended just now.
            }
        }

        child.WaitForExit();
        var code = child.ExitCode;
        if (killed && code == 137)
        {
            Tally.Add("kills.delivered");
            Tally.Add($"kills.random.{args[0]}");
            return true;
        }

        Assert.True(code == 0, $"bbk {string.Join(' ', args)} failed (exit {code}): {stdout.Result} {stderr.Result}");
        Tally.Add("kills.random.completed-first");
        return false;
    }

    /// <summary>
    /// Runs the operation once under strace on a copy of the repository (and of the restore
    /// target), to learn which calls it makes, in which order, on its main thread.
    /// </summary>
    public List<StraceCall> Probe(Func<string, string, string[]> args, string? target = null)
    {
        var n = ++_runs;
        var repo = S.PathOf($"probe-{n}");
        // Named like the real target (kill points recognise it by its name), in the same directory.
        var probeTarget = S.PathOf($"probe-{n}-" + Path.GetFileName(target ?? "target.img"));
        Assert.Equal(0, Shell.Run("cp", "-a", S.RepoPath, repo).Code);
        if (target is not null && File.Exists(target))
        {
            File.Copy(target, probeTarget);
        }

        var log = S.PathOf($"probe-{n}.strace");
        try
        {
            var (code, output) = Traced(["-e", "trace=" + ProbeSet], args(repo, probeTarget), log);
            Assert.True(code == 0, $"the probe run failed (exit {code}): {output}");
            return StraceCall.MainThread(log);
        }
        finally
        {
            Directory.Delete(repo, recursive: true);
            File.Delete(probeTarget);
            File.Delete(log);
            foreach (var leftover in Directory.EnumerateFiles(S.Dir, $".probe-{n}-*"))
            {
                File.Delete(leftover);
            }
        }
    }

    /// <summary>
    /// Kills the operation at the system call <paramref name="point"/> names (strace
    /// inject=…:signal=SIGKILL:when=N, N from the probe). Fails unless the kill fired, killed the
    /// process, and landed on that very call.
    /// </summary>
    public void KillAt(KillPoint point, List<StraceCall> probe, string[] args)
    {
        var (call, file, log, code, output) = Inject(point, probe, args, "signal=SIGKILL");
        Assert.True(code == 137, $"kill point {point.Name} ({call.Syscall} #{call.Ordinal}): the injection never killed the process (exit {code}): {output}");
        Tally.Add("kills.delivered");
        Tally.Add("injections.fired");
        var calls = StraceCall.MainThread(log, firstIsMain: file is not null).Where(c => c.Syscall == call.Syscall).ToList();
        var landed = calls.LastOrDefault();
        Assert.True(landed is not null && landed.Ordinal == call.Ordinal && landed.DidNotReturn && point.IsTarget(landed) && (file is null || landed.Line.Contains(file, StringComparison.Ordinal)),
            $"kill point {point.Name}: the kill was meant for {call.Syscall} #{call.Ordinal} ({call.Line}) but landed on {landed?.Line ?? "nothing"}; "
            + FirstDifference(probe.Where(c => c.Syscall == call.Syscall).ToList(), calls));
        Tally.Add("injections.on-target");
        Log($"killed at {point.Name} [{point.Phase}]: {call.Syscall} #{call.Ordinal}");
        File.Delete(log);
    }

    /// <summary>
    /// Makes the call <paramref name="point"/> names fail with <paramref name="errno"/> (strace
    /// inject=…:error=…); fails unless exactly that call was failed. Returns bbk's exit code and output.
    /// </summary>
    public (int Code, string Output) FailAt(KillPoint point, List<StraceCall> probe, string[] args, string errno)
    {
        var (call, file, log, code, output) = Inject(point, probe, args, $"error={errno}");
        var failed = StraceCall.MainThread(log, firstIsMain: file is not null).FirstOrDefault(c => c.Syscall == call.Syscall && c.Ordinal == call.Ordinal);
        var injected = File.ReadLines(log).Where(l => l.Contains("(INJECTED)", StringComparison.Ordinal)).ToList();
        Assert.True(failed is not null && point.IsTarget(failed) && injected.Count == 1,
            $"fault point {point.Name}: {errno} was meant for {call.Syscall} #{call.Ordinal} ({call.Line}) but went to [{string.Join(" | ", injected)}] (that call: {failed?.Line ?? "never made"})");
        Tally.Add("faults.injected");
        Tally.Add("injections.on-target");
        Log($"{errno} at {point.Name} [{point.Phase}]: {call.Syscall} #{call.Ordinal}; bbk exit {code}");
        File.Delete(log);
        return (code, output);
    }

    private (StraceCall Call, string? File, string Log, int Code, string Output) Inject(KillPoint point, List<StraceCall> probe, string[] args, string effect)
    {
        var call = point.Locate(probe);
        Assert.True(call is not null, $"kill point {point.Name}: the operation no longer makes that call (probe saw {probe.Count} calls); update the suite");
        var log = S.PathOf($"inject-{++_runs}.strace");
        var file = point.File?.Invoke(this);
        string[] filter = file is null ? ["-e", $"trace=execve,{call!.Syscall}"] : ["-P", file, "-e", $"trace={call!.Syscall}"];
        var (code, output) = Traced([.. filter, "-e", $"inject={call.Syscall}:{effect}:when={call.Ordinal}"], args, log);
        return (call, file, log, code, output);
    }

    /// <summary>Where the probe's calls and the killed run's first part ways (names, numbers and ids aside).</summary>
    private static string FirstDifference(List<StraceCall> probe, List<StraceCall> run)
    {
        static string Shape(StraceCall c) => Regex.Replace(c.Line, @"^\d+\s+|[0-9a-f]{8}-[0-9a-f-]{27}|[0-9a-z]{32,}|probe-\d+|/repo|\d+", "#");
        for (var i = 0; i < Math.Min(probe.Count, run.Count); i++)
        {
            if (Shape(probe[i]) != Shape(run[i]))
            {
                return $"first difference at call {i + 1}: probe {probe[i].Line} / run {run[i].Line}";
            }
        }

        return $"the same first {Math.Min(probe.Count, run.Count)} calls";
    }

    /// <summary>
    /// Runs bbk under strace with <paramref name="options"/>; the exit code is strace's (137 when
    /// the traced process was killed). Not --seccomp-bpf, though much faster: with it strace 6.1
    /// injects errors but never delivers an injected signal.
    /// </summary>
    public (int Code, string Output) Traced(string[] options, string[] args, string log)
    {
        using var p = Bbk.StartUnder("strace", ["-f", "-qq", "-y", "-o", log, .. options], args);
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        Assert.True(p.WaitForExit(TimeSpan.FromMinutes(2)), "bbk under strace did not end");
        p.WaitForExit();
        return (p.ExitCode, stdout.Result + stderr.Result);
    }

    // ---- checks after a kill ----------------------------------------------------------------

    /// <summary>
    /// Every earlier backup (but <paramref name="except"/>) lists as available and restores to
    /// its source's hash; nothing else lists as available but, for a killed backup, the backup
    /// itself once committed (then it must restore to <paramref name="killedSource"/>); the rest
    /// is incomplete, never "creating" (its writer is dead) nor damaged. Returns the leftovers
    /// and the committed backup, if any.
    /// </summary>
    public (List<BackupInfo> Leftovers, Guid? Committed) CheckRepository(string? killedSource, Guid? except = null)
    {
        var all = S.Repository.List(includeIncomplete: true);
        foreach (var (id, sha) in _expected.Where(e => e.Key != except))
        {
            var listed = all.SingleOrDefault(b => b.Id == id);
            Assert.True(listed?.Status == BackupStatus.Available, $"earlier backup {id} is {listed?.Status.ToString() ?? "gone"}");
            Assert.Equal(sha, RestoredSha(id));
            Tally.Add("backups.verified-restorable");
        }

        Guid? committed = null;
        var leftovers = new List<BackupInfo>();
        foreach (var b in all.Where(b => !_expected.ContainsKey(b.Id) && b.Id != except))
        {
            switch (b.Status)
            {
                case BackupStatus.Available:
                    Assert.True(killedSource is not null && committed is null, $"backup {b.Id} lists as available but no backup was being made: {b.Container}");
                    Assert.Equal(killedSource, RestoredSha(b.Id));
                    Tally.Add("killed-backups.committed-and-restorable");
                    committed = b.Id;
                    break;
                case BackupStatus.Incomplete:
                    leftovers.Add(b);
                    Tally.Add("leftovers.seen");
                    break;
                default:
                    Assert.Fail($"after the kill, {b.Id} in '{b.Container}' is {b.Status} ({b.Problem}); only Available (committed) or Incomplete may be left by a dead process");
                    break;
            }
        }

        return (leftovers, committed);
    }

    /// <summary>How leftovers are cleaned after a kill (all three must work).</summary>
    public enum Cleanup
    {
        RemoveIncomplete,
        NextBackup,
    }

    /// <summary>
    /// Cleans up (<see cref="Cleanup"/>), makes the next backup of the volume (it must not wait
    /// for any lock, nor fail to remove a leftover), then removes what the kill and the check
    /// added, after which the repository must hold exactly its baseline files and directories.
    /// </summary>
    public void CleanUpAndBackUpAgain(List<BackupInfo> leftovers, Cleanup how, params Guid?[] extra)
    {
        if (how == Cleanup.RemoveIncomplete)
        {
            var removed = S.Repository.RemoveIncomplete(TimeSpan.Zero);
            Assert.Equal(leftovers.Select(b => b.Id).Order(), removed.Select(b => b.Id).Order());
            Tally.Add("leftovers.cleaned.remove-incomplete", removed.Count);
            if (extra.All(e => e is null))
            {
                // A dead holder's lock may stay until the next operation on its volume takes it over.
                AssertBaseline("after RemoveIncomplete", ignoreLockArea: true);
            }
        }

        var messages = new List<string>();
        var progress = new Recorder();
        var next = BackupOperation.Run(S.Repository, new BackupRequest
        {
            SourcePath = VolumeA, UseSnapshot = false, ObjectSize = 1 << 20, Log = m => { lock (messages) { messages.Add(m); } },
        }, progress);
        Assert.True(progress.Phases.All(p => p.Phase != OperationPhase.WaitingForLock),
            "the next backup waited for a lock: " + string.Join("; ", progress.Phases.Where(p => p.Phase == OperationPhase.WaitingForLock).Select(p => p.Activity).Distinct()));
        Assert.DoesNotContain(messages, m => m.StartsWith("Could not remove", StringComparison.Ordinal));
        var cleaned = messages.Count(m => m.StartsWith("Removed the leftover of interrupted backup", StringComparison.Ordinal));
        Assert.Equal(how == Cleanup.NextBackup ? leftovers.Count : 0, cleaned);
        Tally.Add("leftovers.cleaned.next-backup", cleaned);
        Assert.Equal(BackupStatus.Available, next.Backup.Status);
        Tally.Add("next-backups.without-lock-wait");

        foreach (var id in extra.OfType<Guid>().Append(next.Backup.Id))
        {
            S.Repository.Remove(id, includeDependents: false);
        }

        AssertBaseline("after cleanup, the next backup and its removal", ignoreLockArea: false);
    }

    /// <summary>The repository holds exactly its baseline: the same files with the same bytes, the same directories, no stray lock or lease.</summary>
    public void AssertBaseline(string when, bool ignoreLockArea)
    {
        var now = Tree();
        bool Counted(string key) => !ignoreLockArea || !key.StartsWith(".blockbackup" + Path.DirectorySeparatorChar, StringComparison.Ordinal);
        var added = now.Keys.Where(k => !_baseline.ContainsKey(k) && Counted(k)).ToList();
        var gone = _baseline.Keys.Where(k => !now.ContainsKey(k) && Counted(k)).ToList();
        var changed = now.Keys.Where(k => _baseline.TryGetValue(k, out var v) && v != now[k] && Counted(k)).ToList();
        Assert.True(added.Count + gone.Count + changed.Count == 0,
            $"{when} the repository differs from before the kill: added [{string.Join(", ", added)}] gone [{string.Join(", ", gone)}] changed [{string.Join(", ", changed)}]");
    }

    /// <summary>
    /// Every file (with its hash) and directory in the repository. Directories of the lock and
    /// lease area come and go with use; the files there must not stay behind.
    /// </summary>
    public SortedDictionary<string, string> Tree()
    {
        var tree = new SortedDictionary<string, string>(StringComparer.Ordinal);
        var options = new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0, IgnoreInaccessible = false };
        foreach (var entry in new DirectoryInfo(S.RepoPath).EnumerateFileSystemInfos("*", options))
        {
            var rel = Path.GetRelativePath(S.RepoPath, entry.FullName);
            if (entry is DirectoryInfo)
            {
                if (!rel.StartsWith(".blockbackup", StringComparison.Ordinal))
                {
                    tree[rel + Path.DirectorySeparatorChar] = "directory";
                }
            }
            else
            {
                tree[rel] = entry.LinkTarget is { } link ? "link to " + link : Scratch.Sha(entry.FullName);
            }
        }

        return tree;
    }

    public string RestoredSha(Guid id)
    {
        var target = S.PathOf($"check-{id:N}.img");
        try
        {
            RestoreOperation.Run(S.Repository, new RestoreRequest { BackupId = id, TargetPath = target });
            return Scratch.Sha(target);
        }
        finally
        {
            File.Delete(target);
        }
    }

    /// <summary>Where a kill landed, by what the repository shows: before or after the commit point.</summary>
    public void CountCommit(string what, Guid? committed, bool? expected, string point)
    {
        Tally.Add(committed is null ? $"{what}.before-commit" : $"{what}.after-commit");
        if (expected is { } e)
        {
            Assert.True(e == committed is not null, $"kill point {point}: expected the backup to be {(e ? "committed" : "not committed")}, it is {(committed is null ? "not" : "committed")}");
        }
    }

    public void PrintTally(string suite)
    {
        foreach (var line in Tally.Lines())
        {
            Log(line);
        }

        Log(Tally.Summary(suite));
    }

    public void Dispose() => S.Dispose();

    /// <summary>Collects progress reports (from any thread).</summary>
    private sealed class Recorder : IProgress<OperationProgress>
    {
        private readonly List<OperationProgress> _phases = [];

        public List<OperationProgress> Phases
        {
            get
            {
                lock (_phases)
                {
                    return [.. _phases];
                }
            }
        }

        public void Report(OperationProgress value)
        {
            lock (_phases)
            {
                _phases.Add(value);
            }
        }
    }
}
