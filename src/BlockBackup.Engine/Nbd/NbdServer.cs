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
            if (await HandshakeAsync(stream, cancellationToken).ConfigureAwait(false))
            {
                await TransmitAsync(stream, cancellationToken).ConfigureAwait(false);
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
    private async Task<bool> HandshakeAsync(NetworkStream stream, CancellationToken cancel)
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

    private async Task TransmitAsync(NetworkStream stream, CancellationToken cancel)
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
                        await ServeRequestAsync(stream, replyLock, type, cookie, offset, length, payload, cancel).ConfigureAwait(false);
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

    private async Task ServeRequestAsync(NetworkStream stream, SemaphoreSlim replyLock, ushort type, ulong cookie, ulong offset, uint length, byte[]? payload, CancellationToken cancel)
    {
        uint error = 0;
        byte[]? data = null;
        var size = (ulong)export.Size;
        switch (type)
        {
            case CmdRead:
                if (length > MaximumRequest || offset > size || length > size - offset)
                {
                    error = EInval;
                    break;
                }

                // Read straight into the reply, after its 16-byte header, in a pooled buffer: a
                // fresh 256 KiB array per read is large-object garbage that piled up to 700 MB
                // RSS over a 2 GiB nbdcopy.
                data = ArrayPool<byte>.Shared.Rent(16 + (int)length);
                error = Guard(() => export.Read((long)offset, data.AsSpan(16, (int)length)), "read", offset, length);
                break;
            case CmdWrite:
                if (export.ReadOnly)
                {
                    error = EPerm;
                }
                else if (offset > size || length > size - offset)
                {
                    error = ENoSpc;
                }
                else
                {
                    error = Guard(() => export.Write((long)offset, payload.AsSpan(0, (int)length)), "write", offset, length);
                }

                break;
            case CmdFlush:
                error = Guard(export.Flush, "flush", offset, length);
                break;
            default:
                error = EInval;
                break;
        }

        var withData = error == 0 && data is not null;
        var reply = withData ? data! : new byte[16];
        BinaryPrimitives.WriteUInt32BigEndian(reply, SimpleReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(reply.AsSpan(4), error);
        BinaryPrimitives.WriteUInt64BigEndian(reply.AsSpan(8), cookie);
        try
        {
            await replyLock.WaitAsync(cancel).ConfigureAwait(false);
            try
            {
                await stream.WriteAsync(reply.AsMemory(0, withData ? 16 + (int)length : 16), cancel).ConfigureAwait(false);
            }
            finally
            {
                replyLock.Release();
            }
        }
        finally
        {
            if (data is not null)
            {
                ArrayPool<byte>.Shared.Return(data);
            }
        }
    }

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
