using System.Management.Automation;
using BlockBackup.Engine.Policies;

namespace BlockBackup.Commands;

/// <summary>
/// Per policy and volume: health (Healthy, Late, Failing, NeverRun), the last successful backup and
/// its age, next due time, last error, chain length and stored bytes. Plain data, so a monitoring
/// system can poll `Get-BackupPolicyStatus | ConvertTo-Json`.
/// </summary>
[Cmdlet(VerbsCommon.Get, "BackupPolicyStatus")]
[OutputType(typeof(PolicyVolumeStatus), typeof(string))]
public sealed class GetBackupPolicyStatusCommand : PolicyCmdlet
{
    [Parameter(Position = 0, ValueFromPipelineByPropertyName = true)]
    [SupportsWildcards]
    [ArgumentCompleter(typeof(PolicyNameCompleter))]
    public string[] Name { get; set; } = ["*"];

    /// <summary>Object (default): one status object per policy and volume. Prometheus: the same as one text in Prometheus' exposition format (node_exporter's textfile collector).</summary>
    [Parameter]
    [ValidateSet("Object", "Prometheus", IgnoreCase = true)]
    public string Format { get; set; } = "Object";

    /// <summary>Also write the Prometheus text to this file, atomically (for node_exporter's textfile collector: a .prom file in its directory).</summary>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string? MetricsPath { get; set; }

    private readonly List<PolicyVolumeStatus> _all = [];

    protected override void ProcessRecord()
    {
        var store = Store();
        var now = TimeProvider.System.GetUtcNow();
        foreach (var name in Name.SelectMany(n => Matching(store, n)).Distinct(StringComparer.OrdinalIgnoreCase))
        {
            ForItem(() =>
            {
                foreach (var status in StatusOf(store, name, now))
                {
                    if (Format.Equals("Object", StringComparison.OrdinalIgnoreCase))
                    {
                        WriteObject(status);
                    }

                    _all.Add(status);
                }
            });
        }
    }

    protected override void EndProcessing()
    {
        var now = TimeProvider.System.GetUtcNow();
        if (Format.Equals("Prometheus", StringComparison.OrdinalIgnoreCase) || MetricsPath is not null)
        {
            var text = PolicyMetrics.Format(_all, now);
            if (MetricsPath is not null)
            {
                ForItem(() => PolicyMetrics.Write(ResolvePath(MetricsPath), text));
            }

            if (Format.Equals("Prometheus", StringComparison.OrdinalIgnoreCase))
            {
                WriteObject(text);
            }
        }
    }
}
