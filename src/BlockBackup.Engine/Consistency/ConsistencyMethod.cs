using Newtonsoft.Json;
using Newtonsoft.Json.Converters;

namespace BlockBackup.Engine.Consistency;

/// <summary>How a point-in-time view of the volume was obtained for a backup (recorded in the backup).</summary>
[JsonConverter(typeof(StringEnumConverter))]
public enum ConsistencyMethod
{
    /// <summary>A reflink clone of the image file (XFS, btrfs), removed after the backup.</summary>
    ReflinkClone,
    /// <summary>A temporary LVM snapshot of the logical volume, removed after the backup.</summary>
    LvmSnapshot,
    /// <summary>Read directly; the volume was not in use.</summary>
    Direct,
    /// <summary>Read directly while in use, because the caller passed Force (crash-consistent at best).</summary>
    DirectForced,
    /// <summary>Read from an RBD snapshot of the image (kept on the source for the next incremental).</summary>
    RbdSnapshot,
}

public static class ConsistencyNames
{
    public static string ToRecordName(ConsistencyMethod method) => method switch
    {
        ConsistencyMethod.ReflinkClone => "reflink-clone",
        ConsistencyMethod.LvmSnapshot => "lvm-snapshot",
        ConsistencyMethod.Direct => "direct",
        ConsistencyMethod.DirectForced => "direct-forced",
        ConsistencyMethod.RbdSnapshot => "rbd-snapshot",
        _ => throw new ArgumentOutOfRangeException(nameof(method)),
    };
}
