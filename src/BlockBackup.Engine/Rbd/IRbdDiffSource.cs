namespace BlockBackup.Engine.Rbd;

/// <summary>
/// A diff of an image as ordered data and zero records: an <c>rbd export-diff</c> stream
/// (<see cref="RbdDiffReader"/>) or the image itself read through librbd (<see cref="RbdImageDiffSource"/>).
/// </summary>
public interface IRbdDiffSource
{
    /// <summary>The image's size at the diff's end, when known.</summary>
    long? ImageSize { get; }

    /// <summary>The next data or zero record, or null at the end. Unread data of the previous record is skipped.</summary>
    RbdDiffRecord? Next();

    /// <summary>Reads the next bytes of the current data record (exactly destination.Length, at most what is left).</summary>
    void ReadData(Span<byte> destination);
}
