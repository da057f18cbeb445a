using System.Globalization;
using System.Text;

namespace BlockBackup.Engine.Policies;

/// <summary>
/// Policy status in Prometheus' text exposition format, for node_exporter's textfile collector
/// (a *.prom file it reads at every scrape): one series per policy and volume for each figure an
/// alert needs (when the last backup succeeded, whether the last run failed, how long the chain
/// is, what it occupies, when sampled verification last covered the repository).
/// </summary>
public static class PolicyMetrics
{
    private static readonly (string Name, string Help, Func<PolicyVolumeStatus, DateTimeOffset, double?> Value)[] Series =
    [
        ("blockbackup_policy_last_success_timestamp_seconds", "When the last successful backup of the volume started (Unix time).", (s, _) => Seconds(s.LastSuccessUtc)),
        ("blockbackup_policy_last_success_age_seconds", "Age of the last successful backup of the volume, in seconds.", (s, now) => s.LastSuccessUtc is { } t ? Math.Max(0, (now - t).TotalSeconds) : null),
        ("blockbackup_policy_last_run_timestamp_seconds", "When the policy last ran for the volume (Unix time).", (s, _) => Seconds(s.LastRunUtc)),
        ("blockbackup_policy_last_run_success", "1 when the last run for the volume succeeded, 0 when it failed.", (s, _) => s.Health == PolicyHealth.NeverRun ? null : s.Health == PolicyHealth.Failing ? 0 : 1),
        ("blockbackup_policy_next_due_timestamp_seconds", "When the policy is due next (Unix time).", (s, _) => Seconds(s.NextDueUtc)),
        ("blockbackup_policy_chain_length", "Backups in the chain of the volume's newest backup, the full included.", (s, _) => s.ChainLength),
        ("blockbackup_policy_stored_bytes", "Bytes the volume's backups occupy in the repository.", (s, _) => s.StoredBytes),
        ("blockbackup_policy_verification_coverage_timestamp_seconds", "When sampled verification last covered the whole repository (Unix time).", (s, _) => Seconds(s.VerificationCoverageUtc)),
    ];

    /// <summary>The exposition text for <paramref name="statuses"/> as of <paramref name="now"/>.</summary>
    public static string Format(IEnumerable<PolicyVolumeStatus> statuses, DateTimeOffset now)
    {
        var all = statuses.ToList();
        var text = new StringBuilder();
        foreach (var (name, help, value) in Series)
        {
            text.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
            text.Append("# TYPE ").Append(name).Append(" gauge\n");
            foreach (var status in all)
            {
                if (value(status, now) is { } v)
                {
                    text.Append(name).Append(Labels(status)).Append(' ').Append(v.ToString("R", CultureInfo.InvariantCulture)).Append('\n');
                }
            }
        }

        // The health as a state set: exactly one of the four is 1 per policy and volume.
        const string health = "blockbackup_policy_health";
        text.Append("# HELP ").Append(health).Append(" The policy's health for the volume: 1 for the current state.\n");
        text.Append("# TYPE ").Append(health).Append(" gauge\n");
        foreach (var status in all)
        {
            foreach (var state in Enum.GetValues<PolicyHealth>())
            {
                text.Append(health).Append(Labels(status, ("state", state.ToString()))).Append(' ').Append(status.Health == state ? '1' : '0').Append('\n');
            }
        }

        return text.ToString();
    }

    /// <summary>
    /// Writes the text to <paramref name="path"/> atomically (a temporary beside it, then a
    /// rename), as the textfile collector requires: it must never read a half-written file.
    /// </summary>
    public static void Write(string path, string text)
    {
        var full = Path.GetFullPath(path);
        var temporary = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            File.WriteAllText(temporary, text, new UTF8Encoding(false));
            File.Move(temporary, full, overwrite: true);
        }
        finally
        {
            File.Delete(temporary); // gone already after the rename
        }
    }

    private static double? Seconds(DateTimeOffset? time) => time?.ToUnixTimeMilliseconds() / 1000.0;

    private static string Labels(PolicyVolumeStatus s, (string Name, string Value)? extra = null)
    {
        var labels = new StringBuilder("{policy=\"").Append(Escape(s.Policy)).Append("\",volume=\"").Append(Escape(s.Volume)).Append('"');
        if (extra is { } e)
        {
            labels.Append(',').Append(e.Name).Append("=\"").Append(Escape(e.Value)).Append('"');
        }

        return labels.Append('}').ToString();
    }

    /// <summary>Label values escape backslash, double quote and line feed (the exposition format's rule).</summary>
    private static string Escape(string value) => value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);
}
