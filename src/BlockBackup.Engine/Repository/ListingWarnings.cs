namespace BlockBackup.Engine.Repository;

/// <summary>
/// What listings of one repository handle skipped (names that look like a backup's but cannot be
/// one), as one warning per listing, each text given out once: the cmdlets list several times per
/// command and must not repeat it. Listings run on the engine's worker threads, hence the lock.
/// </summary>
internal sealed class ListingWarnings
{
    private const int Shown = 10;

    private readonly object _gate = new();
    private readonly HashSet<string> _given = new(StringComparer.Ordinal);
    private readonly List<string> _pending = [];

    /// <param name="location">The repository, as messages name it.</param>
    /// <param name="skipped">The names skipped by one listing, each with why it cannot be a backup's.</param>
    public void Report(string location, IReadOnlyList<(string Name, string Problem)> skipped)
    {
        if (skipped.Count == 0)
        {
            return;
        }

        var named = string.Join("; ", skipped.Take(Shown).Select(s => $"'{Printable(s.Name)}' ({s.Problem})"));
        var more = skipped.Count > Shown ? $"; and {skipped.Count - Shown} more" : string.Empty;
        var text = $"Ignored {skipped.Count} name(s) in '{location}' that look like a backup's but cannot be one: {named}{more}. " +
            "They are not listed, restored or removed (Cinder ignores them too); delete them by hand if nothing needs them.";
        lock (_gate)
        {
            if (_given.Add(text))
            {
                _pending.Add(text);
            }
        }
    }

    /// <summary>A name as a message shows it: whole (the user has to find it), control characters escaped (it comes from anyone who may write the store).</summary>
    private static string Printable(string name) =>
        string.Concat(name.Take(1024).Select(c => char.IsControl(c) ? $"\\u{(int)c:x4}" : c.ToString()));

    /// <summary>The warnings not given out yet.</summary>
    public IReadOnlyList<string> Take()
    {
        lock (_gate)
        {
            var taken = _pending.ToList();
            _pending.Clear();
            return taken;
        }
    }
}
