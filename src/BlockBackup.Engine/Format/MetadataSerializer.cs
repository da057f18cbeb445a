using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using BlockBackup.Engine.Compression;
using BlockBackup.Engine.Errors;
using Newtonsoft.Json;
using Newtonsoft.Json.Linq;

namespace BlockBackup.Engine.Format;

/// <summary>
/// Reads and writes <c>&lt;prefix&gt;_metadata</c> exactly as Cinder's chunked driver does
/// (sorted keys, 2-space indent) and rejects anything damaged or hostile before it is used.
/// </summary>
public static class MetadataSerializer
{
    /// <summary>No legitimate metadata comes near this (1 TiB in 8 MiB objects is ~25 MB).</summary>
    public const long MaxMetadataBytes = 512L << 20;

    private const string ExtraKey = "blockbackup";

    public static BackupMetadata Read(string path, string expectedPrefix)
    {
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        }
        catch (IOException ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new BackupException(BackupErrorKind.NotFound, "MetadataNotFound", $"Backup metadata '{path}' does not exist.", path, ex);
        }

        return Read(stream, stream.Length, path, expectedPrefix);
    }

    /// <summary>Reads metadata from a stream of <paramref name="length"/> bytes named <paramref name="path"/> in messages; the stream is disposed.</summary>
    public static BackupMetadata Read(Stream stream, long length, string path, string expectedPrefix)
    {
        JObject root;
        ObjectListParser? objects;
        using (stream)
        {
            try
            {
                if (length > MaxMetadataBytes)
                {
                    throw Invalid(path, $"the file is {length} bytes, more than the {MaxMetadataBytes} a metadata file may have");
                }

                using var text = new StreamReader(stream, new UTF8Encoding(false, true));
                using var reader = new JsonTextReader(text) { MaxDepth = 16, DateParseHandling = DateParseHandling.None, FloatParseHandling = FloatParseHandling.Decimal };
                (root, objects) = ReadStreaming(reader, path, expectedPrefix);
                if (reader.Read())
                {
                    throw Invalid(path, "unexpected content after the JSON object");
                }
            }
            catch (JsonException ex)
            {
                throw Invalid(path, "the JSON is truncated or malformed: " + ex.Message, ex);
            }
            catch (DecoderFallbackException ex)
            {
                throw Invalid(path, "the file is not valid UTF-8", ex);
            }
        }

        return Parse(root, objects, path, expectedPrefix);
    }

    /// <summary>
    /// The top level as a document tree, except the object list, which is parsed one entry at a
    /// time: a 4 TiB backup's half a million entries never exist as a tree.
    /// </summary>
    private static (JObject Root, ObjectListParser? Objects) ReadStreaming(JsonTextReader reader, string path, string expectedPrefix)
    {
        if (!reader.Read() || reader.TokenType != JsonToken.StartObject)
        {
            throw Invalid(path, "the file does not hold a JSON object");
        }

        var root = new JObject();
        ObjectListParser? objects = null;
        while (true)
        {
            if (!reader.Read())
            {
                throw Invalid(path, "the JSON is truncated");
            }

            if (reader.TokenType == JsonToken.EndObject)
            {
                return (root, objects);
            }

            var key = (string)reader.Value!;
            if (!reader.Read())
            {
                throw Invalid(path, "the JSON is truncated");
            }

            if (key != "objects")
            {
                root[key] = JToken.ReadFrom(reader);
                continue;
            }

            if (objects is not null)
            {
                throw Invalid(path, "'objects' appears twice");
            }

            objects = new ObjectListParser(path, expectedPrefix);
            if (reader.TokenType != JsonToken.StartArray)
            {
                objects.NotAList();
                JToken.ReadFrom(reader);
                continue;
            }

            for (var i = 0; reader.Read() && reader.TokenType != JsonToken.EndArray; i++)
            {
                objects.Add(JToken.ReadFrom(reader), i);
            }

            if (reader.TokenType != JsonToken.EndArray)
            {
                throw Invalid(path, "the JSON is truncated");
            }
        }
    }

    internal static BackupMetadata Parse(JObject root, string path, string expectedPrefix)
    {
        ObjectListParser? objects = null;
        if (root["objects"] is { } token)
        {
            objects = new ObjectListParser(path, expectedPrefix);
            if (token is JArray list)
            {
                for (var i = 0; i < list.Count; i++)
                {
                    objects.Add(list[i], i);
                }
            }
            else
            {
                objects.NotAList();
            }
        }

        return Parse(root, objects, path, expectedPrefix);
    }

    private static BackupMetadata Parse(JObject root, ObjectListParser? objectList, string path, string expectedPrefix)
    {
        var version = RequiredString(root, "version", path);
        if (version != BackupMetadata.SupportedVersion)
        {
            throw Invalid(path, $"metadata version '{version}' is not supported (only {BackupMetadata.SupportedVersion}, as Cinder)");
        }

        var backupId = RequiredGuid(root, "backup_id", path);
        var volumeId = RequiredGuid(root, "volume_id", path);
        if (!expectedPrefix.EndsWith("_backup_" + ObjectNaming.FormatId(backupId), StringComparison.OrdinalIgnoreCase)
            || !ObjectNaming.PrefixNamesVolume(expectedPrefix, volumeId))
        {
            throw Invalid(path, $"backup_id {backupId} / volume_id {volumeId} do not match the file name prefix '{expectedPrefix}'");
        }

        // The list was parsed as it was read; its first problem is reported only now, so that a
        // wrong version or id is named first, as before anything else.
        var objects = (objectList ?? throw Invalid(path, "'objects' is missing or not a list")).Result();
        var sorted = ObjectOrder.ByOffset(objects);
        for (var i = 1; i < sorted.Count; i++)
        {
            if (sorted[i].Offset < sorted[i - 1].End)
            {
                throw Invalid(path, $"objects '{sorted[i - 1].Name}' [{sorted[i - 1].Offset}, {sorted[i - 1].End}) and '{sorted[i].Name}' [{sorted[i].Offset}, {sorted[i].End}) overlap");
            }
        }

        var extraToken = root["extra_metadata"];
        BlockBackupExtra? extra = null;
        JObject? otherExtra = null;
        if (extraToken is JObject extraObject)
        {
            if (extraObject[ExtraKey] is JObject ours)
            {
                extra = ParseExtra(ours, path);
            }

            otherExtra = (JObject)extraObject.DeepClone();
            otherExtra.Remove(ExtraKey);
            if (otherExtra.Count == 0)
            {
                otherExtra = null;
            }
        }

        if (extra is not null)
        {
            var last = sorted.Count == 0 ? 0 : sorted[^1].End;
            if (last > extra.VolumeSize)
            {
                throw Invalid(path, $"object '{sorted[^1].Name}' ends at {last}, beyond the volume size {extra.VolumeSize}");
            }

            var checksum = ObjectsChecksum(objects);
            if (!string.Equals(checksum, extra.ObjectsSha256, StringComparison.OrdinalIgnoreCase))
            {
                throw Invalid(path, "the object list does not match its recorded checksum (extra_metadata.blockbackup.objects_sha256); the file was altered or damaged");
            }
        }

        return new BackupMetadata
        {
            BackupId = backupId,
            VolumeId = volumeId,
            Name = OptionalString(root, "backup_name", path),
            Description = OptionalString(root, "backup_description", path),
            CreatedAt = OptionalString(root, "created_at", path) ?? string.Empty,
            ParentId = OptionalGuid(root, "parent_id", path),
            VolumeMeta = root["volume_meta"] is JValue { Type: JTokenType.String } vm ? (string?)vm : null,
            Objects = objects,
            Extra = extra,
            OtherExtra = otherExtra,
        };
    }

    private static BlockBackupExtra ParseExtra(JObject o, string path)
    {
        const string where = "extra_metadata.blockbackup";
        var volumeSize = RequiredLong(o, "volume_size", path, where);
        if (volumeSize < 0)
        {
            throw Invalid(path, $"{where}.volume_size is negative");
        }

        var hashBlock = RequiredLong(o, "hash_block_size", path, where);
        var objectSize = RequiredLong(o, "object_size", path, where);
        if (hashBlock <= 0 || hashBlock > (64 << 20) || objectSize <= 0 || objectSize % hashBlock != 0)
        {
            throw Invalid(path, $"{where}: object_size {objectSize} must be a positive multiple of hash_block_size {hashBlock}");
        }

        return new BlockBackupExtra
        {
            Format = RequiredInt(o, "format", path, where),
            VolumeSize = volumeSize,
            Source = OptionalString(o, "source", path),
            SourceSnapshot = OptionalString(o, "source_snapshot", path),
            Consistency = RequiredString(o, "consistency", path, where),
            Compression = RequiredString(o, "compression", path, where),
            CompressionLevel = OptionalInt(o, "compression_level", path, where),
            ObjectSize = objectSize,
            HashBlockSize = (int)hashBlock,
            StartedUtc = CinderTime.TryParseUtc(OptionalString(o, "started_at", path)) ?? DateTime.MinValue,
            CompletedUtc = CinderTime.TryParseUtc(OptionalString(o, "completed_at", path)) ?? DateTime.MinValue,
            StoredBytes = RequiredLong(o, "stored_bytes", path, where),
            ObjectsSha256 = RequiredString(o, "objects_sha256", path, where),
            Sha256FileSha256 = RequiredString(o, "sha256file_sha256", path, where),
            Tool = OptionalString(o, "tool", path),
            Policy = OptionalString(o, "policy", path),
        };
    }

    /// <summary>
    /// Writes the metadata with sorted keys and 2-space indentation, as Python's
    /// <c>json.dumps(sort_keys=True, indent=2)</c> does.
    /// </summary>
    /// <summary>
    /// Writes the metadata as Cinder does (json.dumps(sort_keys=True, indent=2)), streaming the
    /// object list: half a million objects never become a document tree in memory.
    /// </summary>
    public static void Write(Stream stream, BackupMetadata metadata)
    {
        var root = new JObject
        {
            ["backup_description"] = metadata.Description,
            ["backup_id"] = ObjectNaming.FormatId(metadata.BackupId),
            ["backup_name"] = metadata.Name,
            ["created_at"] = metadata.CreatedAt,
            ["parent_id"] = metadata.ParentId is { } p ? ObjectNaming.FormatId(p) : null,
            ["version"] = BackupMetadata.SupportedVersion,
            ["volume_id"] = ObjectNaming.FormatId(metadata.VolumeId),
            ["volume_meta"] = metadata.VolumeMeta,
        };

        var extra = metadata.OtherExtra is null ? new JObject() : (JObject)metadata.OtherExtra.DeepClone();
        if (metadata.Extra is { } x)
        {
            extra[ExtraKey] = new JObject
            {
                ["completed_at"] = CinderTime.Format(x.CompletedUtc),
                ["compression"] = x.Compression,
                ["compression_level"] = x.CompressionLevel,
                ["consistency"] = x.Consistency,
                ["format"] = x.Format,
                ["hash_block_size"] = x.HashBlockSize,
                ["object_size"] = x.ObjectSize,
                ["objects_sha256"] = x.ObjectsSha256,
                ["policy"] = x.Policy,
                ["sha256file_sha256"] = x.Sha256FileSha256,
                ["source"] = x.Source,
                ["source_snapshot"] = x.SourceSnapshot,
                ["started_at"] = CinderTime.Format(x.StartedUtc),
                ["stored_bytes"] = x.StoredBytes,
                ["tool"] = x.Tool,
                ["volume_size"] = x.VolumeSize,
            };
        }

        if (extra.Count > 0)
        {
            root["extra_metadata"] = extra;
        }

        WriteSorted(stream, root, metadata.Objects);
    }

    /// <summary>Serialises a JSON object with recursively sorted keys, Python-style.</summary>
    internal static void WriteSorted(Stream stream, JObject root) => WriteSorted(stream, root, null);

    /// <summary>Writes <paramref name="root"/> with sorted keys; <paramref name="objects"/>, when given, as its "objects" list, streamed in its sorted place.</summary>
    private static void WriteSorted(Stream stream, JObject root, IReadOnlyList<ObjectDescriptor>? objects)
    {
        using var text = new StreamWriter(stream, new UTF8Encoding(false), 1 << 16, leaveOpen: true);
        using var writer = new JsonTextWriter(text)
        {
            Formatting = Formatting.Indented,
            Indentation = 2,
            IndentChar = ' ',
            StringEscapeHandling = StringEscapeHandling.EscapeNonAscii,
        };
        var keys = root.Properties().Select(p => p.Name).ToList();
        if (objects is not null)
        {
            keys.Add("objects");
        }

        writer.WriteStartObject();
        foreach (var key in keys.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal))
        {
            writer.WritePropertyName(key);
            if (objects is not null && key == "objects")
            {
                writer.WriteStartArray();
                foreach (var o in objects)
                {
                    // Keys in sorted order: compression, length, md5, offset.
                    writer.WriteStartObject();
                    writer.WritePropertyName(o.Name);
                    writer.WriteStartObject();
                    writer.WritePropertyName("compression");
                    writer.WriteValue(CompressionNames.ToMetadataName(o.Compression));
                    writer.WritePropertyName("length");
                    writer.WriteValue(o.Length);
                    writer.WritePropertyName("md5");
                    writer.WriteValue(o.Md5);
                    writer.WritePropertyName("offset");
                    writer.WriteValue(o.Offset);
                    writer.WriteEndObject();
                    writer.WriteEndObject();
                }

                writer.WriteEndArray();
            }
            else
            {
                Sort(root[key]!).WriteTo(writer);
            }
        }

        writer.WriteEndObject();
        writer.Flush();
    }

    private static JToken Sort(JToken token) => token switch
    {
        JObject o => new JObject(o.Properties().OrderBy(p => p.Name, StringComparer.Ordinal).Select(p => new JProperty(p.Name, Sort(p.Value)))),
        JArray a => new JArray(a.Select(Sort)),
        _ => token,
    };

    /// <summary>
    /// A canonical, order-preserving checksum of the object list, so that an edited or
    /// damaged list is noticed before any byte is restored.
    /// </summary>
    public static string ObjectsChecksum(IEnumerable<ObjectDescriptor> objects)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var o in objects)
        {
            var line = string.Create(CultureInfo.InvariantCulture,
                $"{o.Name} {o.Offset} {o.Length} {CompressionNames.ToMetadataName(o.Compression)} {o.Md5}\n");
            hash.AppendData(Encoding.UTF8.GetBytes(line));
        }

        return Convert.ToHexString(hash.GetHashAndReset()).ToLowerInvariant();
    }

    internal static bool IsHex(string value, int length) =>
        value.Length == length && value.All(char.IsAsciiHexDigit);

    private static string Printable(string value) =>
        new(value.Take(120).Select(c => char.IsControl(c) ? '?' : c).ToArray());

    private static BackupException Invalid(string path, string what, Exception? inner = null) =>
        new(BackupErrorKind.InvalidData, "InvalidBackupMetadata",
            $"Backup metadata '{path}' is damaged or not a backup this tool can trust: {what}. Nothing was written; restore from another backup or remove this one.",
            path, inner);

    private static string RequiredString(JObject o, string key, string path, string? where = null) =>
        o[key] is JValue { Type: JTokenType.String } v ? (string)v! : throw Invalid(path, $"{Where(where)}'{key}' is missing or not a string");

    private static string? OptionalString(JObject o, string key, string path) => o[key] switch
    {
        null => null,
        JValue { Type: JTokenType.Null } => null,
        JValue { Type: JTokenType.String } v => (string?)v,
        _ => throw Invalid(path, $"'{key}' is not a string"),
    };

    private static long RequiredLong(JObject o, string key, string path, string? where)
    {
        if (o[key] is JValue { Type: JTokenType.Integer } v)
        {
            try
            {
                return (long)v;
            }
            catch (OverflowException)
            {
            }
        }

        throw Invalid(path, $"{Where(where)}'{key}' is missing or not a 64-bit integer");
    }

    /// <summary>A 32-bit field: a larger number is this backup's damage (named), never an OverflowException that breaks a whole listing.</summary>
    private static int RequiredInt(JObject o, string key, string path, string? where)
    {
        var value = RequiredLong(o, key, path, where);
        return value is >= int.MinValue and <= int.MaxValue ? (int)value : throw Invalid(path, $"{Where(where)}'{key}' {value} is out of the 32-bit range");
    }

    /// <summary>An optional 32-bit field; anything but an integer reads as absent (as it always did: it only informs).</summary>
    private static int? OptionalInt(JObject o, string key, string path, string? where) =>
        o[key] is JValue { Type: JTokenType.Integer } ? RequiredInt(o, key, path, where) : null;

    private static Guid RequiredGuid(JObject o, string key, string path) =>
        Guid.TryParseExact(RequiredString(o, key, path), "D", out var g) ? g : throw Invalid(path, $"'{key}' is not a UUID");

    private static Guid? OptionalGuid(JObject o, string key, string path)
    {
        var s = OptionalString(o, key, path);
        return s is null ? null : Guid.TryParseExact(s, "D", out var g) ? g : throw Invalid(path, $"'{key}' is not a UUID");
    }

    private static string Where(string? where) => where is null ? string.Empty : $"{where}: ";

    /// <summary>
    /// Validates object-list entries one at a time (name, offset, length, compression, md5,
    /// duplicates) into compact descriptors, keeping the first problem for <see cref="Result"/>.
    /// </summary>
    private sealed class ObjectListParser(string path, string expectedPrefix)
    {
        private readonly ObjectList _objects = new();
        private readonly ObjectNumberSet _numbered = new(); // not a set of names: half a million for a 4 TiB backup
        private readonly HashSet<string> _others = new(StringComparer.Ordinal);
        private BackupException? _problem;

        public void NotAList() => _problem ??= Invalid(path, "'objects' is missing or not a list");

        public void Add(JToken token, int i)
        {
            if (_problem is not null)
            {
                return;
            }

            try
            {
                _objects.Add(Parse(token, i));
            }
            catch (BackupException ex)
            {
                _problem = ex;
            }
        }

        public ObjectList Result() => _problem is null ? _objects : throw _problem;

        private ObjectDescriptor Parse(JToken token, int i)
        {
            var entry = token as JObject;
            if (entry is null || entry.Count != 1)
            {
                throw Invalid(path, $"objects[{i}] is not a one-key map of object name to descriptor");
            }

            var property = entry.Properties().First();
            var name = property.Name;
            if (!ObjectNaming.IsSafeObjectName(name, expectedPrefix))
            {
                throw Invalid(path, $"objects[{i}] has an unsafe or foreign object name '{Printable(name)}' (it must start with '{expectedPrefix}' and continue with a plain name)");
            }

            if (property.Value is not JObject d)
            {
                throw Invalid(path, $"object '{name}' has no descriptor map");
            }

            var offset = RequiredLong(d, "offset", path, name);
            var length = RequiredLong(d, "length", path, name);
            if (offset < 0)
            {
                throw Invalid(path, $"object '{name}' has a negative offset {offset}");
            }

            if (length <= 0)
            {
                throw Invalid(path, $"object '{name}' has a non-positive length {length}");
            }

            if (offset > long.MaxValue - length)
            {
                throw Invalid(path, $"object '{name}' offset {offset} + length {length} overflows");
            }

            var compressionName = RequiredString(d, "compression", path, name);
            var compression = CompressionNames.Parse(compressionName, $"Metadata '{path}', object '{name}'");
            var md5 = RequiredString(d, "md5", path, name);
            if (!IsHex(md5, 32))
            {
                throw Invalid(path, $"object '{name}' has an invalid md5 '{Printable(md5)}'");
            }

            var descriptor = new ObjectDescriptor(name, offset, length, compression, md5.ToLowerInvariant());
            var (head, number) = descriptor.NameKey;
            if (number >= 0 ? !_numbered.Add(head, number) : !_others.Add(head))
            {
                throw Invalid(path, $"object '{name}' is listed twice");
            }

            return descriptor;
        }
    }
}
