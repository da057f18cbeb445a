using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using BlockBackup.Engine.Errors;
using static BlockBackup.Engine.Nbd.NbdProtocol;

namespace BlockBackup.Engine.Nbd;

/// <summary>
/// Serves one export over the NBD protocol's baseline: the fixed newstyle handshake (GO, INFO,
/// LIST, ABORT, EXPORT_NAME; everything else refused with NBD_REP_ERR_UNSUP), then simple
/// replies to READ, WRITE, FLUSH and DISC. Requests of one connection run concurrently (a
/// client keeps several reads in flight to hide the store's round trips); replies are written
/// whole, one at a time. A failed read is EIO to the client and a logged error naming the object,
/// never wrong bytes. No authentication: listen on a Unix socket or loopback unless told otherwise.
/// </summary>
public sealed class NbdServer(IBlockExport export, string exportName, Action<string>? log = null)
{
    /// <summary>Requests of one connection served at the same time; more wait to be read off the socket.</summary>
    public const int MaxInFlight = 16;

    private long _errors;

    public string ExportName => exportName;

    /// <summary>I/O errors answered so far (each logged).</summary>
    public long Errors => Interlocked.Read(ref _errors);

    /// <summary>A listening socket on <paramref name="endpoint"/> (a stale Unix socket file is replaced).</summary>
    public static Socket Listen(EndPoint endpoint)
    {
        Socket socket;
        if (endpoint is UnixDomainSocketEndPoint unix)
        {
            var path = unix.ToString();
            if (File.Exists(path))
            {
                File.Delete(path);
            }

            socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        }
        else
        {
            socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        }

        try
        {
            socket.Bind(endpoint);
            socket.Listen(16);
            return socket;
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Accepts connections until <paramref name="cancellationToken"/> fires; then closes them all.</summary>
    public async Task RunAsync(Socket listener, CancellationToken cancellationToken)
    {
        var connections = new List<Task>();
        using var stop = cancellationToken.Register(listener.Dispose);
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                Socket client;
                try
                {
                    client = await listener.AcceptAsync(cancellationToken).ConfigureAwait(false);
                }
                catch (Exception) when (cancellationToken.IsCancellationRequested)
                {
                    break;
                }

                if (client.AddressFamily != AddressFamily.Unix)
                {
                    client.NoDelay = true; // replies are written whole; Nagle would only delay them
                }

                lock (connections)
                {
                    connections.RemoveAll(t => t.IsCompleted);
                    connections.Add(Task.Run(() => ServeAsync(client, cancellationToken), CancellationToken.None));
                }
            }
        }
        finally
        {
            Task[] pending;
            lock (connections)
            {
                pending = connections.ToArray();
            }

            await Task.WhenAll(pending).ConfigureAwait(false);
        }
    }

    private async Task ServeAsync(Socket client, CancellationToken cancellationToken)
    {
        using var _ = client;
        await using var stream = new NetworkStream(client, ownsSocket: false);
        using var closeOnStop = cancellationToken.Register(() => client.Close());
        try
        {
            var negotiated = new Negotiated();
            if (await HandshakeAsync(stream, negotiated, cancellationToken).ConfigureAwait(false))
            {
                await TransmitAsync(stream, negotiated, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException or OperationCanceledException or EndOfStreamException)
        {
            // The client went away (or we are stopping): nothing to answer.
        }
        catch (NbdProtocolException ex)
        {
            log?.Invoke($"NBD client dropped: {ex.Message}");
        }
    }

    /// <summary>Negotiation; true when the client chose the export and transmission begins.</summary>
    private async Task<bool> HandshakeAsync(NetworkStream stream, Negotiated negotiated, CancellationToken cancel)
    {
        var hello = new byte[18];
        BinaryPrimitives.WriteUInt64BigEndian(hello, NbdMagic);
        BinaryPrimitives.WriteUInt64BigEndian(hello.AsSpan(8), IHaveOpt);
        BinaryPrimitives.WriteUInt16BigEndian(hello.AsSpan(16), FlagFixedNewstyle | FlagNoZeroes);
        await stream.WriteAsync(hello, cancel).ConfigureAwait(false);
        var buffer = new byte[16];
        await stream.ReadExactlyAsync(buffer.AsMemory(0, 4), cancel).ConfigureAwait(false);
        var clientFlags = BinaryPrimitives.ReadUInt32BigEndian(buffer);
        if ((clientFlags & ClientFlagFixedNewstyle) == 0)
        {
            throw new NbdProtocolException("the client does not speak the fixed newstyle handshake");
        }

        var noZeroes = (clientFlags & ClientFlagNoZeroes) != 0;
        while (true)
        {
            await stream.ReadExactlyAsync(buffer.AsMemory(0, 16), cancel).ConfigureAwait(false);
            if (BinaryPrimitives.ReadUInt64BigEndian(buffer) != IHaveOpt)
            {
                throw new NbdProtocolException("an option did not start with IHAVEOPT");
            }

            var option = BinaryPrimitives.ReadUInt32BigEndian(buffer.AsSpan(8));
            var length = BinaryPrimitives.ReadUInt32BigEndian(buffer.AsSpan(12));
            if (length > MaximumOptionLength)
            {
                throw new NbdProtocolException($"option {option} carries {length} bytes, more than the {MaximumOptionLength} accepted");
            }

            var data = new byte[length];
            await stream.ReadExactlyAsync(data, cancel).ConfigureAwait(false);
            switch (option)
            {
                case OptExportName:
                    if (!Matches(Encoding.UTF8.GetString(data)))
                    {
                        return false; // the protocol's only answer to an unknown name here is to hang up
                    }

                    var reply = new byte[noZeroes ? 10 : 134];
                    BinaryPrimitives.WriteUInt64BigEndian(reply, (ulong)export.Size);
                    BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(8), TransmissionFlags);
                    await stream.WriteAsync(reply, cancel).ConfigureAwait(false);
                    return true;
                case OptAbort:
                    await ReplyAsync(stream, option, RepAck, [], cancel).ConfigureAwait(false);
                    return false;
                case OptList:
                    if (length != 0)
                    {
                        await ReplyAsync(stream, option, RepErrInvalid, [], cancel).ConfigureAwait(false);
                        break;
                    }

                    var name = Encoding.UTF8.GetBytes(exportName);
                    var server = new byte[4 + name.Length];
                    BinaryPrimitives.WriteUInt32BigEndian(server, (uint)name.Length);
                    name.CopyTo(server, 4);
                    await ReplyAsync(stream, option, RepServer, server, cancel).ConfigureAwait(false);
                    await ReplyAsync(stream, option, RepAck, [], cancel).ConfigureAwait(false);
                    break;
                case OptInfo or OptGo:
                    if (await InfoAsync(stream, option, data, cancel).ConfigureAwait(false) && option == OptGo)
                    {
                        return true;
                    }

                    break;
                case OptStructuredReply:
                    negotiated.Structured = length == 0;
                    await ReplyAsync(stream, option, length == 0 ? RepAck : RepErrInvalid, [], cancel).ConfigureAwait(false);
                    break;
                case OptListMetaContext or OptSetMetaContext:
                    await MetaContextAsync(stream, option, data, negotiated, cancel).ConfigureAwait(false);
                    break;
                default:
                    await ReplyAsync(stream, option, RepErrUnsup, [], cancel).ConfigureAwait(false);
                    break;
            }
        }
    }

    /// <summary>Answers NBD_OPT_INFO / NBD_OPT_GO; true when the export was found and described.</summary>
    private async Task<bool> InfoAsync(NetworkStream stream, uint option, byte[] data, CancellationToken cancel)
    {
        if (data.Length < 6 || BinaryPrimitives.ReadUInt32BigEndian(data) is var nameLength && nameLength > data.Length - 6
            || data.Length != 6 + nameLength + 2 * BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(4 + (int)nameLength)))
        {
            await ReplyAsync(stream, option, RepErrInvalid, [], cancel).ConfigureAwait(false);
            return false;
        }

        if (!Matches(Encoding.UTF8.GetString(data, 4, (int)nameLength)))
        {
            await ReplyAsync(stream, option, RepErrUnknown, Encoding.UTF8.GetBytes($"no export named that; this server exports '{exportName}'"), cancel).ConfigureAwait(false);
            return false;
        }

        var info = new byte[12];
        BinaryPrimitives.WriteUInt16BigEndian(info, InfoExport);
        BinaryPrimitives.WriteUInt64BigEndian(info.AsSpan(2), (ulong)export.Size);
        BinaryPrimitives.WriteUInt16BigEndian(info.AsSpan(10), TransmissionFlags);
        await ReplyAsync(stream, option, RepInfo, info, cancel).ConfigureAwait(false);
        var sizes = new byte[14];
        BinaryPrimitives.WriteUInt16BigEndian(sizes, InfoBlockSize);
        BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(2), MinimumBlockSize);
        BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(6), (uint)Math.Max(MinimumBlockSize, export.PreferredBlockSize));
        BinaryPrimitives.WriteUInt32BigEndian(sizes.AsSpan(10), MaximumRequest);
        await ReplyAsync(stream, option, RepInfo, sizes, cancel).ConfigureAwait(false);
        await ReplyAsync(stream, option, RepAck, [], cancel).ConfigureAwait(false);
        return true;
    }

    /// <summary>
    /// NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT: the one context served is
    /// base:allocation (holes and zeros), for exports that know it; SET needs structured replies.
    /// </summary>
    private async Task MetaContextAsync(NetworkStream stream, uint option, byte[] data, Negotiated negotiated, CancellationToken cancel)
    {
        var queries = new List<string>();
        var ok = data.Length >= 8;
        var position = 0;
        string? name = null;
        if (ok)
        {
            var nameLength = BinaryPrimitives.ReadUInt32BigEndian(data);
            ok = nameLength <= data.Length - 8;
            if (ok)
            {
                name = Encoding.UTF8.GetString(data, 4, (int)nameLength);
                position = 4 + (int)nameLength;
                var count = BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(position));
                position += 4;
                for (var i = 0; ok && i < count; i++)
                {
                    ok = position + 4 <= data.Length && BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(position)) is var l && l <= data.Length - position - 4;
                    if (ok)
                    {
                        var l2 = (int)BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(position));
                        queries.Add(Encoding.UTF8.GetString(data, position + 4, l2));
                        position += 4 + l2;
                    }
                }

                ok = ok && position == data.Length;
            }
        }

        if (!ok || (option == OptSetMetaContext && !negotiated.Structured))
        {
            await ReplyAsync(stream, option, RepErrInvalid, [], cancel).ConfigureAwait(false);
            return;
        }

        if (!Matches(name!))
        {
            await ReplyAsync(stream, option, RepErrUnknown, [], cancel).ConfigureAwait(false);
            return;
        }

        // LIST with no queries lists everything; "base:" asks for every context of that namespace.
        var offered = export is IAllocationMap
            && (queries.Contains(AllocationContext) || (option == OptListMetaContext && (queries.Count == 0 || queries.Contains("base:"))));
        if (option == OptSetMetaContext)
        {
            negotiated.Allocation = offered;
        }

        if (offered)
        {
            var context = Encoding.UTF8.GetBytes(AllocationContext);
            var reply = new byte[4 + context.Length];
            BinaryPrimitives.WriteUInt32BigEndian(reply, AllocationContextId);
            context.CopyTo(reply, 4);
            await ReplyAsync(stream, option, RepMetaContext, reply, cancel).ConfigureAwait(false);
        }

        await ReplyAsync(stream, option, RepAck, [], cancel).ConfigureAwait(false);
    }

    // The empty name is the default export (nbdinfo and qemu ask for it when the URI names none).
    private bool Matches(string name) => name.Length == 0 || name == exportName;

    private ushort TransmissionFlags => (ushort)(TransHasFlags | TransSendFlush | TransCanMultiConn | (export.ReadOnly ? TransReadOnly : 0));

    private static async Task ReplyAsync(NetworkStream stream, uint option, uint type, byte[] data, CancellationToken cancel)
    {
        var reply = new byte[20 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(reply, OptionReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(12), type);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(16), (uint)data.Length);
        data.CopyTo(reply, 20);
        await stream.WriteAsync(reply, cancel).ConfigureAwait(false);
    }

    private async Task TransmitAsync(NetworkStream stream, Negotiated negotiated, CancellationToken cancel)
    {
        var replyLock = new SemaphoreSlim(1, 1);
        var slots = new SemaphoreSlim(MaxInFlight, MaxInFlight);
        var inFlight = new List<Task>();
        var header = new byte[28];
        try
        {
            while (true)
            {
                await stream.ReadExactlyAsync(header, cancel).ConfigureAwait(false);
                if (BinaryPrimitives.ReadUInt32BigEndian(header) != RequestMagic)
                {
                    throw new NbdProtocolException("a request did not start with the request magic");
                }

                var flags = BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(4));
                var type = BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(6));
                var cookie = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8));
                var offset = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(16));
                var length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(24));
                if (type == CmdDisc)
                {
                    return; // the finally waits for what is in flight; DISC has no reply
                }

                byte[]? payload = null;
                if (type == CmdWrite)
                {
                    if (length > MaximumRequest)
                    {
                        throw new NbdProtocolException($"a write of {length} bytes is more than the {MaximumRequest} advertised");
                    }

                    payload = ArrayPool<byte>.Shared.Rent((int)length);
                    await stream.ReadExactlyAsync(payload.AsMemory(0, (int)length), cancel).ConfigureAwait(false);
                }

                await slots.WaitAsync(cancel).ConfigureAwait(false);
                var task = Task.Run(async () =>
                {
                    try
                    {
                        await ServeRequestAsync(stream, replyLock, negotiated, new Request(flags, type, cookie, offset, length), payload, cancel).ConfigureAwait(false);
                    }
                    finally
                    {
                        if (payload is not null)
                        {
                            ArrayPool<byte>.Shared.Return(payload);
                        }

                        slots.Release();
                    }
                }, CancellationToken.None);
                lock (inFlight)
                {
                    inFlight.RemoveAll(t => t.IsCompleted);
                    inFlight.Add(task);
                }
            }
        }
        finally
        {
            Task[] pending;
            lock (inFlight)
            {
                pending = inFlight.ToArray();
            }

            try
            {
                await Task.WhenAll(pending).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException or OperationCanceledException)
            {
                // A reply could not be sent: the connection is gone either way.
            }
        }
    }

    private async Task ServeRequestAsync(NetworkStream stream, SemaphoreSlim replyLock, Negotiated negotiated, Request request, byte[]? payload, CancellationToken cancel)
    {
        var (offset, length) = (request.Offset, request.Length);
        var size = (ulong)export.Size;
        var inRange = offset <= size && length <= size - offset;
        byte[]? pooled = null;
        byte[] reply;
        int replyLength;
        if (request.Type == CmdRead && inRange && length <= MaximumRequest)
        {
            // Read straight into the reply, after its header, in a pooled buffer: a fresh 256 KiB
            // array per read is large-object garbage that piled up to 700 MB RSS over a 2 GiB nbdcopy.
            var headerLength = negotiated.Structured ? StructuredHeader + 8 : SimpleHeader;
            pooled = ArrayPool<byte>.Shared.Rent(headerLength + (int)length);
            var error = Guard(() => export.Read((long)offset, pooled.AsSpan(headerLength, (int)length)), "read", offset, length);
            (reply, replyLength) = error != 0 ? ErrorReply(negotiated, request.Cookie, error)
                : negotiated.Structured ? (Chunk(pooled, ReplyTypeOffsetData, request.Cookie, 8 + (int)length, offset), headerLength + (int)length)
                : (Simple(pooled, request.Cookie, 0), headerLength + (int)length);
        }
        else if (request.Type == CmdBlockStatus && negotiated.Allocation && inRange && length > 0 && export is IAllocationMap map)
        {
            var stretches = map.Allocation((long)offset, length, (request.Flags & CmdFlagReqOne) != 0 ? 1 : 1024);
            reply = new byte[StructuredHeader + 4 + 8 * stretches.Count];
            Chunk(reply, ReplyTypeBlockStatus, request.Cookie, reply.Length - StructuredHeader);
            BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(StructuredHeader), AllocationContextId);
            for (var i = 0; i < stretches.Count; i++)
            {
                var at = reply.AsSpan(StructuredHeader + 4 + 8 * i);
                BinaryPrimitives.WriteUInt32BigEndian(at, (uint)stretches[i].Length);
                BinaryPrimitives.WriteUInt32BigEndian(at[4..], stretches[i].Zero ? StateHole | StateZero : 0);
            }

            replyLength = reply.Length;
        }
        else
        {
            var error = request.Type switch
            {
                CmdWrite when export.ReadOnly => EPerm,
                CmdWrite when !inRange => ENoSpc,
                CmdWrite => Guard(() => export.Write((long)offset, payload.AsSpan(0, (int)length)), "write", offset, length),
                CmdFlush => Guard(export.Flush, "flush", offset, length),
                _ => EInval, // a read out of range, a block status without the context, an unknown command
            };
            // A simple reply may answer anything but a read when structured replies are on.
            (reply, replyLength) = request.Type == CmdRead ? ErrorReply(negotiated, request.Cookie, error) : (Simple(new byte[SimpleHeader], request.Cookie, error), SimpleHeader);
        }

        try
        {
            await replyLock.WaitAsync(cancel).ConfigureAwait(false);
            try
            {
                await stream.WriteAsync(reply.AsMemory(0, replyLength), cancel).ConfigureAwait(false);
            }
            finally
            {
                replyLock.Release();
            }
        }
        finally
        {
            if (pooled is not null)
            {
                ArrayPool<byte>.Shared.Return(pooled);
            }
        }
    }

    private const int SimpleHeader = 16;
    private const int StructuredHeader = 20;

    private static byte[] Simple(byte[] buffer, ulong cookie, uint error)
    {
        BinaryPrimitives.WriteUInt32BigEndian(buffer, SimpleReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(4), error);
        BinaryPrimitives.WriteUInt64BigEndian(buffer.AsSpan(8), cookie);
        return buffer;
    }

    /// <summary>Writes a final structured reply chunk's header (and, for OFFSET_DATA, the offset) into <paramref name="buffer"/>.</summary>
    private static byte[] Chunk(byte[] buffer, ushort type, ulong cookie, int payloadLength, ulong offset = 0)
    {
        BinaryPrimitives.WriteUInt32BigEndian(buffer, StructuredReplyMagic);
        BinaryPrimitives.WriteUInt16BigEndian(buffer.AsSpan(4), ReplyFlagDone);
        BinaryPrimitives.WriteUInt16BigEndian(buffer.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(buffer.AsSpan(8), cookie);
        BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(16), (uint)payloadLength);
        if (type == ReplyTypeOffsetData)
        {
            BinaryPrimitives.WriteUInt64BigEndian(buffer.AsSpan(StructuredHeader), offset);
        }

        return buffer;
    }

    /// <summary>A failed read's reply: simple, or with structured replies an NBD_REPLY_TYPE_ERROR chunk (no message).</summary>
    private static (byte[] Reply, int Length) ErrorReply(Negotiated negotiated, ulong cookie, uint error)
    {
        if (!negotiated.Structured)
        {
            return (Simple(new byte[SimpleHeader], cookie, error), SimpleHeader);
        }

        var reply = new byte[StructuredHeader + 6];
        Chunk(reply, ReplyTypeError, cookie, 6);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(StructuredHeader), error);
        return (reply, reply.Length);
    }

    /// <summary>What one connection agreed during the handshake.</summary>
    private sealed class Negotiated
    {
        public bool Structured { get; set; }
        public bool Allocation { get; set; }
    }

    private readonly record struct Request(ushort Flags, ushort Type, ulong Cookie, ulong Offset, uint Length);

    /// <summary>Runs one request's work; a failure becomes the errno the client sees, logged with what failed.</summary>
    private uint Guard(Action work, string what, ulong offset, uint length)
    {
        try
        {
            work();
            return 0;
        }
        catch (Exception ex) when (ex is BackupException or IOException or UnauthorizedAccessException)
        {
            Interlocked.Increment(ref _errors);
            var id = ex is BackupException b ? b.ErrorId : ex.GetType().Name;
            log?.Invoke($"NBD {what} of {length} bytes at offset {offset} of export '{exportName}' failed with EIO: [{id}] {ex.Message}");
            return EIO;
        }
        catch (OutOfMemoryException)
        {
            return ENoMem;
        }
    }

    private sealed class NbdProtocolException(string message) : Exception(message);
}
