using System.Buffers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Hashing;

namespace BlockBackup.Engine.Format;

/// <summary>Header fields of a <c>&lt;prefix&gt;_sha256file</c> (everything but the list itself).</summary>
public sealed record Sha256FileHeader(Guid BackupId, Guid VolumeId, string? Name, string? Description, string CreatedAt, int ChunkSize);

/// <summary>
/// Streams Cinder's hash list in and out without ever holding its JSON: the list of a 1 TiB
/// volume is ~2.4 GB of text. Hashes go to/from a <see cref="BlockHashList"/>.
/// </summary>
public static class Sha256File
{
    public const int DefaultChunkSize = 32768;

    /// <summary>Writes the file and returns the SHA-256 of the bytes written.</summary>
    /// <remarks>
    /// The layout is Python's <c>json.dumps(sort_keys=True, indent=2)</c> with ASCII escapes, as
    /// Cinder writes it. Hashes are written as UTF-8 straight from the binary list: a 1 TiB
    /// volume's 33 million entries make no string each.
    /// </remarks>
    public static string Write(Stream stream, Sha256FileHeader header, BlockHashList hashes, CancellationToken cancellationToken)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        using (var hashing = new HashingWriteStream(stream, sha))
        using (var w = new Utf8JsonWriter(hashing, new JsonWriterOptions { Indented = true }))
        {
            // Keys in sorted order, as Python's json.dumps(sort_keys=True) writes them.
            w.WriteStartObject();
            w.WritePropertyName("backup_description"); w.WriteRawValue(PythonString(header.Description));
            w.WriteString("backup_id", ObjectNaming.FormatId(header.BackupId));
            w.WritePropertyName("backup_name"); w.WriteRawValue(PythonString(header.Name));
            w.WriteNumber("chunk_size", header.ChunkSize);
            w.WritePropertyName("created_at"); w.WriteRawValue(PythonString(header.CreatedAt));
            w.WriteStartArray("sha256s");
            const int batch = 4096;
            var buffer = new byte[batch * BlockHashList.HashSize];
            Span<byte> hex = stackalloc byte[64];
            for (long i = 0; i < hashes.Count; i += batch)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var n = (int)Math.Min(batch, hashes.Count - i);
                var span = buffer.AsSpan(0, n * BlockHashList.HashSize);
                hashes.Get(i, span);
                for (var k = 0; k < n; k++)
                {
                    Hex.Encode(span.Slice(k * 32, 32), hex);
                    w.WriteStringValue(hex);
                }

                w.Flush(); // Utf8JsonWriter holds everything until flushed
            }

            w.WriteEndArray();
            w.WriteString("version", BackupMetadata.SupportedVersion);
            w.WriteString("volume_id", ObjectNaming.FormatId(header.VolumeId));
            w.WriteEndObject();
            w.Flush();
        }

        return Convert.ToHexString(sha.GetHashAndReset()).ToLowerInvariant();
    }

    /// <summary>
    /// A JSON string as Python's json.dumps writes it: non-ASCII as lower-case \\u escapes, and
    /// nothing escaped that it leaves alone (System.Text.Json escapes '+' and HTML characters).
    /// </summary>
    private static string PythonString(string? value) =>
        value is null ? "null" : Newtonsoft.Json.JsonConvert.ToString(value, '"', Newtonsoft.Json.StringEscapeHandling.EscapeNonAscii);

    /// <summary>
    /// Reads a hash list, streaming, into a new <see cref="BlockHashList"/>. Validates every entry
    /// and, when <paramref name="expectedSha256"/> is given, the checksum of the whole file.
    /// </summary>
    public static (Sha256FileHeader Header, BlockHashList Hashes) Read(string path, Guid expectedBackupId, string? expectedSha256, string? spillDirectory, CancellationToken cancellationToken)
    {
        FileStream file;
        try
        {
            file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        }
        catch (IOException ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new BackupException(BackupErrorKind.NotFound, "Sha256FileNotFound", $"The hash list '{path}' of backup {expectedBackupId} is missing; the backup is incomplete or damaged.", path, ex);
        }

        return Read(file, file.Length, path, expectedBackupId, expectedSha256, spillDirectory, cancellationToken);
    }

    /// <summary>
    /// Reads a hash list from a stream of <paramref name="length"/> bytes (an object store's
    /// response), named <paramref name="path"/> in messages; the stream is disposed.
    /// </summary>
    /// <remarks>
    /// One pass over the bytes, a buffer at a time: the SHA-256 of the file, a UTF-8 check and
    /// System.Text.Json's forward-only reader, whose string values are decoded as hex in place.
    /// (Json.NET made a string of every entry: 67 million for a 1 TiB chain, most of a
    /// verification's time and its garbage.) <paramref name="bufferSize"/> is for tests that
    /// split entries across reads.
    /// </remarks>
    public static (Sha256FileHeader Header, BlockHashList Hashes) Read(Stream file, long length, string path, Guid expectedBackupId, string? expectedSha256, string? spillDirectory, CancellationToken cancellationToken,
        int bufferSize = 1 << 20)
    {
        // Each entry takes at least 66 bytes ("<64 hex>"), so this bounds the count from above.
        var capacity = length / 66 + 1;
        var hashes = BlockHashList.Create(capacity, spillDirectory);
        var buffer = ArrayPool<byte>.Shared.Rent(bufferSize);
        long offset = 0; // of buffer[0] in the file
        try
        {
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var parser = new Parser(path, hashes);
            var utf8 = new Utf8Check(path);
            var state = new JsonReaderState(new JsonReaderOptions { MaxDepth = 8 });
            var filled = 0;
            using (file)
            {
                while (true)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    if (filled == buffer.Length)
                    {
                        // One value longer than the buffer (a long description): a bigger buffer, within reason.
                        Expect(buffer.Length < MaxValueBytes, path, $"a value at byte {offset} is longer than {MaxValueBytes >> 20} MiB");
                        var bigger = ArrayPool<byte>.Shared.Rent(buffer.Length * 2);
                        buffer.AsSpan(0, filled).CopyTo(bigger);
                        ArrayPool<byte>.Shared.Return(buffer);
                        buffer = bigger;
                    }

                    var got = file.Read(buffer, filled, buffer.Length - filled);
                    sha.AppendData(buffer, filled, got);
                    utf8.Add(buffer.AsSpan(filled, got), offset + filled, final: got == 0);
                    filled += got;
                    var reader = new Utf8JsonReader(buffer.AsSpan(0, filled), isFinalBlock: got == 0, state);
                    parser.Consume(ref reader, offset, cancellationToken);
                    state = reader.CurrentState;
                    var used = (int)reader.BytesConsumed;
                    buffer.AsSpan(used, filled - used).CopyTo(buffer);
                    filled -= used;
                    offset += used;
                    if (got == 0)
                    {
                        break;
                    }
                }
            }

            var header = parser.Finish(expectedBackupId);
            var actual = Convert.ToHexString(sha.GetHashAndReset()).ToLowerInvariant();
            if (expectedSha256 is not null && !string.Equals(actual, expectedSha256, StringComparison.OrdinalIgnoreCase))
            {
                throw Invalid(path, "its checksum does not match the one recorded in the backup's metadata; the hash list was altered or damaged");
            }

            return (header, hashes);
        }
        catch (JsonException ex)
        {
            hashes.Dispose();
            throw Invalid(path, $"the JSON is truncated or malformed after byte {offset}: {ex.Message}", ex);
        }
        catch
        {
            hashes.Dispose();
            throw;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>No single JSON value (a name, a description) of a hash list may be longer.</summary>
    private const int MaxValueBytes = 64 << 20;

    /// <summary>
    /// The structure of a hash list, fed token by token as the bytes arrive: a top-level object
    /// whose "sha256s" list is decoded into the hash list a batch at a time and whose header
    /// fields are kept; other keys are skipped whatever they hold.
    /// </summary>
    private sealed class Parser(string path, BlockHashList hashes)
    {
        private enum Expecting { Root, Key, Value, Hash, Skip, Done }

        private readonly byte[] batch = new byte[4096 * BlockHashList.HashSize];
        private int inBatch;
        private Expecting expecting;
        private string key = string.Empty;
        private int skipDepth;
        private bool sawList;
        private long? chunkSize;
        private string? name, description, createdAt, backupId, volumeId, version;

        private long Entries => hashes.Count + inBatch / BlockHashList.HashSize;

        public void Consume(ref Utf8JsonReader r, long offset, CancellationToken cancellationToken)
        {
            while (r.Read())
            {
                switch (expecting)
                {
                    case Expecting.Root:
                        Expect(r.TokenType == JsonTokenType.StartObject, path, "the file does not start with a JSON object");
                        expecting = Expecting.Key;
                        break;
                    case Expecting.Key:
                        if (r.TokenType == JsonTokenType.EndObject)
                        {
                            expecting = Expecting.Done;
                            break;
                        }

                        key = r.GetString()!;
                        expecting = Expecting.Value;
                        break;
                    case Expecting.Value:
                        Value(ref r, offset);
                        break;
                    case Expecting.Hash:
                        if (r.TokenType == JsonTokenType.EndArray)
                        {
                            hashes.Append(batch.AsSpan(0, inBatch));
                            inBatch = 0;
                            expecting = Expecting.Key;
                            break;
                        }

                        if (r.TokenType != JsonTokenType.String || !DecodeHash(ref r, batch.AsSpan(inBatch, BlockHashList.HashSize)))
                        {
                            // Not Expect(): its message would be formatted for each of millions of good entries.
                            throw Invalid(path, $"entry {Entries} of 'sha256s' (byte {offset + r.TokenStartIndex}) is not a 64-digit hex SHA-256");
                        }

                        inBatch += BlockHashList.HashSize;
                        if (inBatch == batch.Length)
                        {
                            cancellationToken.ThrowIfCancellationRequested();
                            hashes.Append(batch);
                            inBatch = 0;
                        }

                        break;
                    case Expecting.Skip:
                        if (r.TokenType is JsonTokenType.EndObject or JsonTokenType.EndArray && r.CurrentDepth == skipDepth)
                        {
                            expecting = Expecting.Key;
                        }

                        break;
                    default:
                        throw Invalid(path, "unexpected content after the JSON object"); // the reader refuses it first
                }
            }
        }

        private void Value(ref Utf8JsonReader r, long offset)
        {
            expecting = Expecting.Key;
            switch (key)
            {
                case "sha256s":
                    Expect(r.TokenType == JsonTokenType.StartArray, path, "'sha256s' is not a list");
                    Expect(!sawList, path, "'sha256s' appears twice");
                    sawList = true;
                    expecting = Expecting.Hash;
                    break;
                case "chunk_size":
                    long value = 0;
                    Expect(r.TokenType == JsonTokenType.Number && r.TryGetInt64(out value), path, $"'chunk_size' (byte {offset + r.TokenStartIndex}) is not an integer");
                    chunkSize = value;
                    break;
                case "backup_id": backupId = Text(ref r); break;
                case "volume_id": volumeId = Text(ref r); break;
                case "backup_name": name = Text(ref r); break;
                case "backup_description": description = Text(ref r); break;
                case "created_at": createdAt = Text(ref r); break;
                case "version": version = Text(ref r); break;
                default:
                    if (r.TokenType is JsonTokenType.StartObject or JsonTokenType.StartArray)
                    {
                        skipDepth = r.CurrentDepth;
                        expecting = Expecting.Skip;
                    }

                    break;
            }
        }

        /// <summary>A string or null; Cinder writes nothing else in these fields.</summary>
        private string? Text(ref Utf8JsonReader r) => r.TokenType switch
        {
            JsonTokenType.String => r.GetString(),
            JsonTokenType.Null => null,
            _ => throw Invalid(path, $"'{key}' is not a string"),
        };

        private static bool DecodeHash(ref Utf8JsonReader r, Span<byte> destination)
        {
            if (!r.ValueIsEscaped)
            {
                return Hex.TryDecode(r.ValueSpan, destination);
            }

            // 64 digits written as \uXXXX escapes take at most 384 bytes; anything longer is not a hash.
            Span<byte> unescaped = stackalloc byte[384];
            return r.ValueSpan.Length <= unescaped.Length && Hex.TryDecode(unescaped[..r.CopyString(unescaped)], destination);
        }

        public Sha256FileHeader Finish(Guid expectedBackupId)
        {
            Expect(expecting == Expecting.Done, path, $"the JSON is truncated after {Entries} hashes");
            Expect(sawList, path, "'sha256s' is missing");
            Expect(chunkSize is > 0 and <= 64 << 20, path, $"'chunk_size' {chunkSize} is missing or out of range");
            Expect(version == BackupMetadata.SupportedVersion, path, $"version '{version}' is not supported");
            Expect(Guid.TryParse(backupId, out var bid) && bid == expectedBackupId, path, $"backup_id '{backupId}' is not {expectedBackupId}");
            Expect(Guid.TryParse(volumeId, out var vid), path, "volume_id is not a UUID");
            return new Sha256FileHeader(bid, vid, name, description, createdAt ?? string.Empty, (int)chunkSize!.Value);
        }
    }

    /// <summary>
    /// Checks that the file is UTF-8 as it streams by, naming the offset of the first bad byte.
    /// Cinder's lists are ASCII, so a buffer is normally one vectorised ASCII test; the decoder
    /// runs only when other bytes appear (or a sequence spans two buffers).
    /// </summary>
    private sealed class Utf8Check(string path)
    {
        private readonly Decoder decoder = new UTF8Encoding(false, true).GetDecoder();
        private readonly char[] scratch = new char[1 << 14];
        private bool pending;

        public void Add(ReadOnlySpan<byte> bytes, long offset, bool final)
        {
            if (!pending && !final && Ascii.IsValid(bytes))
            {
                return;
            }

            var done = 0;
            try
            {
                do
                {
                    decoder.Convert(bytes[done..], scratch, final, out var used, out _, out var completed);
                    done += used;
                    pending = !completed;
                }
                while (done < bytes.Length);
            }
            catch (DecoderFallbackException ex)
            {
                throw Invalid(path, $"it is not UTF-8 text (a bad byte near byte {offset + done + Math.Max(0, ex.Index)})", ex);
            }
        }
    }

    private static void Expect(bool condition, string path, string what)
    {
        if (!condition)
        {
            throw Invalid(path, what);
        }
    }

    private static BackupException Invalid(string path, string what, Exception? inner = null) =>
        new(BackupErrorKind.InvalidData, "InvalidSha256File", $"Hash list '{path}' is damaged: {what}.", path, inner);
}

/// <summary>Lower-case hex without allocation.</summary>
public static class Hex
{
    /// <summary>UTF-8 hex digits, as JSON writes them.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)] // hot loop: skip tier-0 code
    public static void Encode(ReadOnlySpan<byte> bytes, Span<byte> utf8)
    {
        ReadOnlySpan<byte> digits = "0123456789abcdef"u8;
        for (var i = 0; i < bytes.Length; i++)
        {
            utf8[2 * i] = digits[bytes[i] >> 4];
            utf8[2 * i + 1] = digits[bytes[i] & 15];
        }
    }

    /// <summary>Decodes UTF-8 hex digits (either case); false unless exactly 2 digits a byte.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)] // hot loop: skip tier-0 code
    public static bool TryDecode(ReadOnlySpan<byte> utf8, Span<byte> destination)
    {
        if (utf8.Length != destination.Length * 2)
        {
            return false;
        }

        for (var i = 0; i < destination.Length; i++)
        {
            var hi = Nibble((char)utf8[2 * i]);
            var lo = Nibble((char)utf8[2 * i + 1]);
            if ((hi | lo) < 0)
            {
                return false;
            }

            destination[i] = (byte)(hi << 4 | lo);
        }

        return true;
    }

    private static int Nibble(char c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'a' and <= 'f' => c - 'a' + 10,
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => -1,
    };
}
