using BlockBackup.Engine.Compression;
using Newtonsoft.Json.Linq;

namespace BlockBackup.Engine.Format;

/// <summary>
/// One data object of a backup: where its uncompressed bytes belong in the volume. A 4 TiB
/// backup lists half a million of them, so each is kept compact (about 64 bytes rather than
/// 400): the name as its shared prefix plus its number, the MD5 as 16 bytes; the strings are
/// made again when asked for.
/// </summary>
public sealed record ObjectDescriptor
{
    private readonly string _head;     // the name up to "-NNNNN" (shared between a backup's objects), or the whole name
    private readonly int _number = -1; // -1: _head is the whole name
    private readonly byte _digits;
    private readonly UInt128 _md5;
    private readonly string? _md5Text; // only for a value that is not 32 lowercase hex digits

    public ObjectDescriptor(string name, long offset, long length, CompressionAlgorithm compression, string md5)
    {
        (_head, _number, _digits) = Split(name);
        Offset = offset;
        Length = length;
        Compression = compression;
        if (md5.Length == 32 && md5.All(c => char.IsAsciiDigit(c) || c is >= 'a' and <= 'f'))
        {
            _md5 = UInt128.Parse(md5, System.Globalization.NumberStyles.AllowHexSpecifier, System.Globalization.CultureInfo.InvariantCulture);
        }
        else
        {
            _md5Text = md5;
        }
    }

    /// <summary>From the parts an <see cref="ObjectList"/> keeps (the head already shared).</summary>
    internal ObjectDescriptor(string head, int number, byte digits, long offset, long length, CompressionAlgorithm compression, UInt128 md5, string? md5Text)
    {
        (_head, _number, _digits, _md5, _md5Text) = (head, number, digits, md5, md5Text);
        Offset = offset;
        Length = length;
        Compression = compression;
    }

    /// <summary>What an <see cref="ObjectList"/> keeps of it.</summary>
    internal (string Head, int Number, byte Digits, UInt128 Md5, string? Md5Text) Parts => (_head, _number, _digits, _md5, _md5Text);

    public string Name => _number < 0 ? _head : string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{_head}-{_number.ToString("D" + _digits, System.Globalization.CultureInfo.InvariantCulture)}");

    public long Offset { get; }

    public long Length { get; }

    public CompressionAlgorithm Compression { get; }

    /// <summary>The MD5 of the uncompressed bytes, lowercase hex (Cinder's field).</summary>
    public string Md5 => _md5Text ?? _md5.ToString("x32", System.Globalization.CultureInfo.InvariantCulture);

    public long End => Offset + Length;

    /// <summary>Whether the MD5 is <paramref name="md5"/> (as a 128-bit number), without formatting it: restore and verification ask this of every object.</summary>
    internal bool Md5Is(UInt128 md5) => _md5Text is null && _md5 == md5;

    /// <summary>The name's identity without building it (duplicate checks over half a million names).</summary>
    internal (string Head, int Number) NameKey => (_head, _number);

    /// <summary>The <see cref="NameKey"/> an object named <paramref name="name"/> has.</summary>
    internal static (string Head, int Number) KeyOf(string name)
    {
        var (head, number, _) = Split(name);
        return (head, number);
    }

    /// <summary>"prefix-00042" → (interned "prefix", 42, 5) when formatting gives the name back exactly; else the whole name.</summary>
    private static (string Head, int Number, byte Digits) Split(string name)
    {
        var dash = name.LastIndexOf('-');
        var digits = name.Length - dash - 1;
        if (dash > 0 && digits is >= 5 and <= 9 && name.AsSpan(dash + 1).IndexOfAnyExcept("0123456789") < 0
            && int.TryParse(name.AsSpan(dash + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var number)
            && (digits == 5 || name[dash + 1] != '0'))
        {
            // Interned: every object of a backup shares one copy of its prefix.
            return (string.Intern(name[..dash]), number, (byte)Math.Max(5, digits));
        }

        return (name, -1, 0);
    }

    public override string ToString() => $"{Name} [{Offset}, {End}) {Compression} md5 {Md5}";
}

/// <summary>
/// The contents of <c>&lt;prefix&gt;_metadata</c>: Cinder's fields plus BlockBackup's own
/// (<see cref="Extra"/>), which live under <c>extra_metadata.blockbackup</c> where Cinder ignores them.
/// </summary>
public sealed class BackupMetadata
{
    public const string SupportedVersion = "1.0.0";

    public required Guid BackupId { get; init; }
    public required Guid VolumeId { get; init; }
    public string? Name { get; init; }
    public string? Description { get; init; }
    /// <summary>Python <c>str(datetime)</c> as Cinder writes it; informational.</summary>
    public required string CreatedAt { get; init; }
    public Guid? ParentId { get; init; }
    public string? VolumeMeta { get; init; }
    public required IReadOnlyList<ObjectDescriptor> Objects { get; init; }
    public BlockBackupExtra? Extra { get; init; }
    /// <summary>extra_metadata members written by other tools, preserved verbatim.</summary>
    public JObject? OtherExtra { get; init; }
}

/// <summary>Fields Cinder has no slot for. Absent on backups Cinder itself wrote.</summary>
public sealed class BlockBackupExtra
{
    public const int CurrentFormat = 1;

    public int Format { get; init; } = CurrentFormat;
    public required long VolumeSize { get; init; }
    public string? Source { get; init; }
    /// <summary>For an RBD source: the snapshot this backup read, which the next incremental diffs from.</summary>
    public string? SourceSnapshot { get; init; }
    public required string Consistency { get; init; }
    public required string Compression { get; init; }
    public int? CompressionLevel { get; init; }
    public required long ObjectSize { get; init; }
    public required int HashBlockSize { get; init; }
    public required DateTime StartedUtc { get; init; }
    public required DateTime CompletedUtc { get; init; }
    public required long StoredBytes { get; init; }
    /// <summary>SHA-256 over the canonical object list (see <see cref="MetadataSerializer.ObjectsChecksum"/>).</summary>
    public required string ObjectsSha256 { get; init; }
    /// <summary>SHA-256 of the sha256file's bytes, which are written before the metadata.</summary>
    public required string Sha256FileSha256 { get; init; }
    public string? Tool { get; init; }
    /// <summary>The backup policy that made the backup (extra_metadata.blockbackup.policy); null when made by hand.</summary>
    public string? Policy { get; init; }
}
