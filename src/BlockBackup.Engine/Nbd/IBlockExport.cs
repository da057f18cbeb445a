namespace BlockBackup.Engine.Nbd;

/// <summary>What an NBD export serves: a fixed-size device read (and, unless read-only, written) at byte offsets, from any thread.</summary>
public interface IBlockExport : IDisposable
{
    long Size { get; }
    bool ReadOnly { get; }
    /// <summary>The size a client should read in (advertised as the preferred block size).</summary>
    int PreferredBlockSize { get; }
    void Read(long offset, Span<byte> destination);
    void Write(long offset, ReadOnlySpan<byte> source);
    void Flush();
}

/// <summary>An export that knows which stretches read as zeros without reading them (for NBD_CMD_BLOCK_STATUS, so clients skip holes).</summary>
public interface IAllocationMap
{
    /// <summary>From <paramref name="offset"/> on, within <paramref name="length"/> bytes: consecutive stretches, each data or zeros, at most <paramref name="maxStretches"/>.</summary>
    IReadOnlyList<(long Length, bool Zero)> Allocation(long offset, long length, int maxStretches);
}
