using System.Security.Cryptography;
using System.Text;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Hashing;
using Newtonsoft.Json;

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
    public static string Write(Stream stream, Sha256FileHeader header, BlockHashList hashes, CancellationToken cancellationToken)
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        using (var hashing = new HashingWriteStream(stream, sha))
        using (var text = new StreamWriter(hashing, new UTF8Encoding(false), 1 << 16, leaveOpen: true))
        using (var w = new JsonTextWriter(text) { Formatting = Formatting.Indented, Indentation = 2, StringEscapeHandling = StringEscapeHandling.EscapeNonAscii })
        {
            // Keys in sorted order, as Python's json.dumps(sort_keys=True) writes them.
            w.WriteStartObject();
            w.WritePropertyName("backup_description"); w.WriteValue(header.Description);
            w.WritePropertyName("backup_id"); w.WriteValue(ObjectNaming.FormatId(header.BackupId));
            w.WritePropertyName("backup_name"); w.WriteValue(header.Name);
            w.WritePropertyName("chunk_size"); w.WriteValue(header.ChunkSize);
            w.WritePropertyName("created_at"); w.WriteValue(header.CreatedAt);
            w.WritePropertyName("sha256s");
            w.WriteStartArray();
            const int batch = 4096;
            var buffer = new byte[batch * BlockHashList.HashSize];
            var hex = new char[64];
            for (long i = 0; i < hashes.Count; i += batch)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var n = (int)Math.Min(batch, hashes.Count - i);
                var span = buffer.AsSpan(0, n * BlockHashList.HashSize);
                hashes.Get(i, span);
                for (var k = 0; k < n; k++)
                {
                    Hex.Encode(span.Slice(k * 32, 32), hex);
                    w.WriteValue(new string(hex));
                }
            }

            w.WriteEndArray();
            w.WritePropertyName("version"); w.WriteValue(BackupMetadata.SupportedVersion);
            w.WritePropertyName("volume_id"); w.WriteValue(ObjectNaming.FormatId(header.VolumeId));
            w.WriteEndObject();
            w.Flush();
        }

        return Convert.ToHexString(sha.GetHashAndReset()).ToLowerInvariant();
    }

    /// <summary>
    /// Reads a hash list, streaming, into a new <see cref="BlockHashList"/>. Validates every entry
    /// and, when <paramref name="expectedSha256"/> is given, the checksum of the whole file.
    /// </summary>
    public static (Sha256FileHeader Header, BlockHashList Hashes) Read(string path, Guid expectedBackupId, string? expectedSha256, string? spillDirectory, CancellationToken cancellationToken)
    {
        FileStream file;
        try
        {
            file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
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
    public static (Sha256FileHeader Header, BlockHashList Hashes) Read(Stream file, long length, string path, Guid expectedBackupId, string? expectedSha256, string? spillDirectory, CancellationToken cancellationToken)
    {
        // Each entry takes at least 66 bytes ("<64 hex>"), so this bounds the count from above.
        var capacity = length / 66 + 1;
        var hashes = BlockHashList.Create(capacity, spillDirectory);
        try
        {
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            using (file)
            using (var hashing = new HashingReadStream(file, sha))
            using (var text = new StreamReader(hashing, new UTF8Encoding(false, true), false, 1 << 16))
            using (var r = new JsonTextReader(text) { MaxDepth = 8, DateParseHandling = DateParseHandling.None })
            {
                string? name = null, description = null, createdAt = null, backupId = null, volumeId = null, version = null;
                long? chunkSize = null;
                var sawList = false;
                Expect(r.Read() && r.TokenType == JsonToken.StartObject, path, "the file does not start with a JSON object");
                var batch = new byte[4096 * 32];
                var inBatch = 0;
                while (true)
                {
                    Expect(r.Read(), path, "the JSON is truncated");
                    if (r.TokenType == JsonToken.EndObject)
                    {
                        break;
                    }

                    Expect(r.TokenType == JsonToken.PropertyName, path, "unexpected JSON token " + r.TokenType);
                    var key = (string)r.Value!;
                    Expect(r.Read(), path, "the JSON is truncated");
                    switch (key)
                    {
                        case "sha256s":
                            Expect(r.TokenType == JsonToken.StartArray, path, "'sha256s' is not a list");
                            sawList = true;
                            while (true)
                            {
                                Expect(r.Read(), path, $"the JSON is truncated after {hashes.Count + inBatch / 32} hashes");
                                if (r.TokenType == JsonToken.EndArray)
                                {
                                    break;
                                }

                                var index = hashes.Count + inBatch / 32;
                                Expect(r.TokenType == JsonToken.String && r.Value is string s && Hex.TryDecode(s, batch.AsSpan(inBatch, 32)), path,
                                    $"entry {index} of 'sha256s' is not a 64-digit hex SHA-256");
                                inBatch += 32;
                                if (inBatch == batch.Length)
                                {
                                    cancellationToken.ThrowIfCancellationRequested();
                                    hashes.Append(batch);
                                    inBatch = 0;
                                }
                            }

                            hashes.Append(batch.AsSpan(0, inBatch));
                            inBatch = 0;
                            break;
                        case "chunk_size":
                            Expect(r.TokenType == JsonToken.Integer, path, "'chunk_size' is not an integer");
                            chunkSize = Convert.ToInt64(r.Value, System.Globalization.CultureInfo.InvariantCulture);
                            break;
                        case "backup_id": backupId = r.Value as string; break;
                        case "volume_id": volumeId = r.Value as string; break;
                        case "backup_name": name = r.Value as string; break;
                        case "backup_description": description = r.Value as string; break;
                        case "created_at": createdAt = r.Value as string; break;
                        case "version": version = r.Value as string; break;
                        default:
                            r.Skip();
                            break;
                    }
                }

                Expect(!r.Read(), path, "unexpected content after the JSON object");
                Expect(sawList, path, "'sha256s' is missing");
                Expect(chunkSize is > 0 and <= 64 << 20, path, $"'chunk_size' {chunkSize} is missing or out of range");
                Expect(version == BackupMetadata.SupportedVersion, path, $"version '{version}' is not supported");
                Expect(Guid.TryParse(backupId, out var bid) && bid == expectedBackupId, path, $"backup_id '{backupId}' is not {expectedBackupId}");
                Expect(Guid.TryParse(volumeId, out var vid), path, "volume_id is not a UUID");

                var header = new Sha256FileHeader(bid, vid, name, description, createdAt ?? string.Empty, (int)chunkSize!.Value);
                text.Close();
                var actual = Convert.ToHexString(sha.GetHashAndReset()).ToLowerInvariant();
                if (expectedSha256 is not null && !string.Equals(actual, expectedSha256, StringComparison.OrdinalIgnoreCase))
                {
                    throw Invalid(path, "its checksum does not match the one recorded in the backup's metadata; the hash list was altered or damaged");
                }

                return (header, hashes);
            }
        }
        catch (JsonException ex)
        {
            hashes.Dispose();
            throw Invalid(path, "the JSON is truncated or malformed: " + ex.Message, ex);
        }
        catch (DecoderFallbackException ex)
        {
            hashes.Dispose();
            throw Invalid(path, $"it is not UTF-8 text (byte offset {ex.Index} of a read buffer)", ex);
        }
        catch (Exception ex) when (ex is OverflowException or InvalidCastException or FormatException)
        {
            hashes.Dispose();
            throw Invalid(path, "a number in it is out of range or not a number: " + ex.Message, ex);
        }
        catch
        {
            hashes.Dispose();
            throw;
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
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)] // hot loop: skip tier-0 code
    public static void Encode(ReadOnlySpan<byte> bytes, Span<char> chars)
    {
        const string digits = "0123456789abcdef";
        for (var i = 0; i < bytes.Length; i++)
        {
            chars[2 * i] = digits[bytes[i] >> 4];
            chars[2 * i + 1] = digits[bytes[i] & 15];
        }
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveOptimization)] // hot loop: skip tier-0 code
    public static bool TryDecode(string s, Span<byte> destination)
    {
        if (s.Length != destination.Length * 2)
        {
            return false;
        }

        for (var i = 0; i < destination.Length; i++)
        {
            var hi = Nibble(s[2 * i]);
            var lo = Nibble(s[2 * i + 1]);
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
