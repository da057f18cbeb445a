using System.Collections;
using System.Globalization;
using System.Text;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.Format;
using BlockBackup.Engine.ObjectStores;
using Newtonsoft.Json.Linq;

namespace BlockBackup.Engine.Repository;

/// <summary>
/// Fencing between a backup's commit and the removal of its objects as a leftover, on object
/// storage, where the volume lock is a lease that can lapse under a holder that still runs (paused
/// longer than the lease, a clock more than the lease minus one renewal behind). A lapsed holder
/// must never list an Available backup whose objects a cleaner deleted meanwhile.
/// <para>
/// The meeting point is the backup's in-flight record, written once by its backup and compared
/// byte for byte. The cleaner (holding the volume lock) <b>fences</b> it, rewriting it with a
/// <c>fenced_by</c> field, and only then looks for the backup's <c>_metadata</c>: present means
/// the backup committed, so the record is put back as it was and nothing is deleted; absent means
/// the objects go (metadata first), and the metadata is deleted once more at the end. The
/// committer puts its <c>_metadata</c> and only then reads the record again: anything but the
/// bytes it wrote (fenced, gone) means a cleaner may be deleting its objects, so it deletes its
/// <c>_metadata</c> again and fails with <c>VolumeLockLost</c>.
/// </para>
/// <para>
/// Why at least one side always sees the other (Dekker's argument, on a store where a read that
/// starts after a write completed sees it: RGW, AWS S3, Swift on RGW): the cleaner's fence write
/// precedes its metadata stat, and the committer's metadata put precedes its record read. If the
/// stat saw no metadata, the stat came before the put completed; so the fence (before the stat)
/// completed before the committer's read (after the put) and that read sees the fence, or the
/// cleaner's later deletion of the record: the committer retracts. If the stat saw the metadata,
/// the cleaner deletes nothing (the committer may then still see the fence and retract: a backup
/// lost, never an incomplete one listed). The cleaner's second metadata delete covers a put that
/// landed while it was deleting; the committer's own retraction covers one that lands after.
/// Before any of this the committer also checks its lock and lists its objects, so a backup whose
/// lease lapsed long before its commit fails without storing its hash list at all.
/// </para>
/// <para>
/// What is left: between a retracting committer's put and its delete (milliseconds) the backup
/// lists as Available; a committer killed in exactly that moment, after a cleaner deleted its
/// objects, leaves metadata that verification reports as objects missing. The backup that cleaned
/// up never bases an incremental on a backup it removed (see BackupOperation.ChooseParent). A fence
/// put back after its committer had already checked and deleted the record leaves that record
/// beside a complete backup: listings ignore it, and it is not cleaned up, since removing the
/// record of a backup with metadata would make a committer still before its check retract it.
/// </para>
/// </summary>
internal static class CommitFence
{
    private const int MaxRecordSize = 64 << 10;

    /// <summary>The record's bytes, or null when it is gone or too large to be one.</summary>
    public static byte[]? ReadRecord(IObjectStore store, string key, CancellationToken cancellationToken)
    {
        try
        {
            using var stream = store.GetAsync(key, 0, MaxRecordSize + 1, cancellationToken).GetAwaiter().GetResult();
            var buffer = new MemoryStream();
            stream.CopyTo(buffer);
            return buffer.Length > MaxRecordSize ? null : buffer.ToArray();
        }
        catch (BackupException ex) when (ex.Kind == BackupErrorKind.NotFound)
        {
            return null;
        }
    }

    /// <summary>
    /// The cleaner's side, under the volume lock: fences the leftover's record, then looks for its
    /// metadata. True: it did not commit and its objects may go (the record stays fenced until
    /// the deletion removes it). False: it committed meanwhile; its record is as it was.
    /// </summary>
    public static bool FenceLeftover(IObjectStore store, string recordKey, string prefix, CancellationToken cancellationToken)
    {
        var original = ReadRecord(store, recordKey, cancellationToken);
        if (original is not null)
        {
            Put(store, recordKey, Fenced(original), cancellationToken);
        }

        if (store.StatAsync(ObjectNaming.MetadataName(prefix), cancellationToken).GetAwaiter().GetResult() is null)
        {
            return true;
        }

        if (original is not null)
        {
            Put(store, recordKey, original, cancellationToken); // the committer compares it byte for byte
        }

        return false;
    }

    /// <summary>The committer's side, after its metadata put: whether its record is still exactly what it wrote.</summary>
    public static bool RecordIsOurs(IObjectStore store, string recordKey, byte[] written, CancellationToken cancellationToken) =>
        ReadRecord(store, recordKey, cancellationToken) is { } now && now.AsSpan().SequenceEqual(written);

    /// <summary>
    /// What is wrong with the objects a backup wrote, as listed under its prefix, or null when
    /// every one of them is there and their sizes add up to what was stored.
    /// </summary>
    public static string? CheckObjects(IObjectStore store, string prefix, ObjectList written, long storedBytes, CancellationToken cancellationToken)
    {
        var seen = new BitArray(written.Count);
        var found = 0;
        long bytes = 0;
        var enumerator = store.ListAsync(prefix, cancellationToken).GetAsyncEnumerator(cancellationToken);
        try
        {
            while (enumerator.MoveNextAsync().AsTask().GetAwaiter().GetResult())
            {
                var o = enumerator.Current;
                // A data object's name is the prefix, '-' and its number, from 1 in volume order.
                if (o.Name.Length > prefix.Length + 1 && o.Name[prefix.Length] == '-' && o.Name.StartsWith(prefix, StringComparison.Ordinal)
                    && int.TryParse(o.Name.AsSpan(prefix.Length + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var number)
                    && number >= 1 && number <= written.Count && !seen[number - 1] && written[number - 1].Name == o.Name)
                {
                    seen[number - 1] = true;
                    found++;
                    bytes += o.Size;
                }
            }
        }
        finally
        {
            enumerator.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }

        if (found < written.Count)
        {
            var first = Enumerable.Range(0, written.Count).First(i => !seen[i]);
            return $"{written.Count - found} of its {written.Count} objects are missing (the first: '{written[first].Name}')";
        }

        return bytes == storedBytes ? null : $"its objects hold {bytes} bytes where {storedBytes} were stored";
    }

    public static BackupException LockLost(Guid volumeId, Guid backupId, string repository, string what) =>
        new(BackupErrorKind.ResourceBusy, "VolumeLockLost",
            $"Backup {backupId} of volume {volumeId} in '{repository}' was not completed: {what}. Its lease on the volume's lock lapsed (this process was paused, or its clock is behind the others' by more than the lease allows) and another process took the volume over, possibly removing this backup's objects as those of an interrupted backup. Nothing of it is listed as available; run the backup again.",
            backupId);

    private static byte[] Fenced(byte[] original)
    {
        JObject json;
        try
        {
            json = JObject.Parse(Encoding.UTF8.GetString(original));
        }
        catch (Newtonsoft.Json.JsonException)
        {
            json = new JObject(); // unreadable: any other bytes fence it just as well
        }

        json["fenced_by"] = $"cleanup by process {Environment.ProcessId} on {Environment.MachineName} at {DateTime.UtcNow.ToString("O", CultureInfo.InvariantCulture)}";
        return Encoding.UTF8.GetBytes(json.ToString(Newtonsoft.Json.Formatting.None));
    }

    private static void Put(IObjectStore store, string key, byte[] bytes, CancellationToken cancellationToken) =>
        store.PutAsync(key, new MemoryStream(bytes), bytes.Length, PutOptions.Default, cancellationToken).GetAwaiter().GetResult();
}
