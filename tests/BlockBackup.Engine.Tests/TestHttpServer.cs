using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace BlockBackup.Engine.Tests;

/// <summary>
/// A tiny HTTP/1.1 server on 127.0.0.1 for object-store tests: a handler answers a request itself
/// (a fake Keystone, an injected 503, 401 or dropped connection) or returns null to have it
/// forwarded unchanged to <c>upstream</c> (the test RGW), with upstream URLs in the answer's
/// headers (Swift's X-Storage-Url) rewritten to point back here. Every request is logged.
/// </summary>
public sealed class TestHttpServer : IDisposable
{
    private readonly TcpListener listener;
    private readonly Uri? upstream;
    private readonly Func<Request, Response?> handler;
    private readonly CancellationTokenSource stop = new();
    private readonly Task accepting;

    public TestHttpServer(Uri? upstream, Func<Request, Response?> handler)
    {
        this.upstream = upstream;
        this.handler = handler;
        listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        Url = new Uri($"http://127.0.0.1:{((IPEndPoint)listener.LocalEndpoint).Port}");
        accepting = Task.Run(AcceptAsync);
    }

    public Uri Url { get; }

    /// <summary>Every request served: method, target (path and query), the status answered (0 = dropped).</summary>
    public ConcurrentQueue<(string Method, string Target, int Status)> Log { get; } = new();

    public int Count(string method, Func<string, bool>? target = null) =>
        Log.Count(e => e.Method == method && (target is null || target(e.Target)));

    public sealed record Request(string Method, string Target, IReadOnlyDictionary<string, string> Headers, byte[] Body)
    {
        public string Path => Target.Split('?')[0];
        public string? Header(string name) => Headers.TryGetValue(name, out var v) ? v : null;
    }

    /// <param name="Drop">Close the connection without answering (a reset, as the client sees it).</param>
    /// <param name="CutAfter">Announce the whole body but send only this many bytes of it, then reset the connection.</param>
    public sealed record Response(int Status, string Reason = "", IReadOnlyDictionary<string, string>? Headers = null, byte[]? Body = null, bool Drop = false, int? CutAfter = null)
    {
        public static Response SlowDown() => new(503, "Slow Down", new Dictionary<string, string> { ["Content-Type"] = "application/xml" },
            Encoding.UTF8.GetBytes("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"));

        public static Response Json(int status, string json, IReadOnlyDictionary<string, string>? headers = null)
        {
            var all = new Dictionary<string, string>(headers ?? new Dictionary<string, string>()) { ["Content-Type"] = "application/json" };
            return new(status, status == 201 ? "Created" : "OK", all, Encoding.UTF8.GetBytes(json));
        }
    }

    public void Dispose()
    {
        stop.Cancel();
        listener.Stop();
        try
        {
            accepting.Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
        }

        stop.Dispose();
    }

    private async Task AcceptAsync()
    {
        while (!stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await listener.AcceptTcpClientAsync(stop.Token);
            }
            catch (Exception)
            {
                return;
            }

            _ = Task.Run(() => ServeAsync(client));
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        TcpClient? up = null;
        try
        {
            using var _ = client;
            var stream = client.GetStream();
            var reader = new Reader(stream);
            Reader? upReader = null;
            while (!stop.IsCancellationRequested)
            {
                var line = await reader.LineAsync(stop.Token);
                if (line is null)
                {
                    return;
                }

                var parts = line.Split(' ');
                var headerLines = new List<string>();
                var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
                for (var h = await reader.LineAsync(stop.Token); !string.IsNullOrEmpty(h); h = await reader.LineAsync(stop.Token))
                {
                    headerLines.Add(h);
                    var colon = h.IndexOf(':', StringComparison.Ordinal);
                    headers[h[..colon].Trim()] = h[(colon + 1)..].Trim();
                }

                if (headers.TryGetValue("Expect", out var expect) && expect.Equals("100-continue", StringComparison.OrdinalIgnoreCase))
                {
                    await stream.WriteAsync(Encoding.ASCII.GetBytes("HTTP/1.1 100 Continue\r\n\r\n"), stop.Token);
                }

                if (headers.TryGetValue("Transfer-Encoding", out var te) && te.Contains("chunked", StringComparison.OrdinalIgnoreCase))
                {
                    throw new NotSupportedException("chunked request bodies are not supported by the test server");
                }

                var body = headers.TryGetValue("Content-Length", out var cl) ? await reader.ExactAsync(long.Parse(cl, CultureInfo.InvariantCulture), stop.Token) : [];
                var request = new Request(parts[0], parts[1], headers, body);
                var answer = handler(request);
                if (answer is { Drop: true })
                {
                    Log.Enqueue((request.Method, request.Target, 0));
                    client.Client.LingerState = new LingerOption(true, 0); // RST, as a broken connection
                    return;
                }

                if (answer is not null)
                {
                    Log.Enqueue((request.Method, request.Target, answer.Status));
                    var payload = request.Method == "HEAD" ? [] : answer.Body ?? [];
                    var head = new StringBuilder($"HTTP/1.1 {answer.Status} {answer.Reason}\r\n");
                    foreach (var (k, v) in answer.Headers ?? new Dictionary<string, string>())
                    {
                        head.Append(CultureInfo.InvariantCulture, $"{k}: {v}\r\n");
                    }

                    head.Append(CultureInfo.InvariantCulture, $"Content-Length: {payload.Length}\r\n\r\n");
                    await stream.WriteAsync(Encoding.ASCII.GetBytes(head.ToString()), stop.Token);
                    if (answer.CutAfter is { } cut)
                    {
                        await stream.WriteAsync(payload.AsMemory(0, Math.Min(cut, payload.Length)), stop.Token);
                        await stream.FlushAsync(stop.Token);
                        client.Client.LingerState = new LingerOption(true, 0); // RST mid-body
                        return;
                    }

                    await stream.WriteAsync(payload, stop.Token);
                    continue;
                }

                if (upstream is null)
                {
                    throw new InvalidOperationException("no upstream to forward to");
                }

                if (up is null || !up.Connected)
                {
                    up?.Dispose();
                    up = new TcpClient();
                    await up.ConnectAsync(upstream.Host, upstream.Port, stop.Token);
                    upReader = new Reader(up.GetStream());
                }

                var upStream = up.GetStream();
                var forward = new StringBuilder(line + "\r\n");
                foreach (var h in headerLines.Where(h => !h.StartsWith("Expect:", StringComparison.OrdinalIgnoreCase)))
                {
                    forward.Append(h).Append("\r\n");
                }

                forward.Append("\r\n");
                await upStream.WriteAsync(Encoding.ASCII.GetBytes(forward.ToString()), stop.Token);
                await upStream.WriteAsync(body, stop.Token);
                var closeAfter = await RelayResponseAsync(request, upReader!, stream);
                if (closeAfter)
                {
                    return;
                }
            }
        }
        catch (Exception)
        {
            // a test server: a broken connection ends that connection only
        }
        finally
        {
            up?.Dispose();
        }
    }

    /// <summary>Copies one upstream answer to the client; true when the connection must close after it.</summary>
    private async Task<bool> RelayResponseAsync(Request request, Reader upstreamReader, Stream client)
    {
        string? status;
        var head = new StringBuilder();
        int code;
        do
        {
            head.Clear();
            status = await upstreamReader.LineAsync(stop.Token) ?? throw new IOException("upstream closed");
            code = int.Parse(status.Split(' ')[1], CultureInfo.InvariantCulture);
            head.Append(status).Append("\r\n");
            var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
            for (var h = await upstreamReader.LineAsync(stop.Token); !string.IsNullOrEmpty(h); h = await upstreamReader.LineAsync(stop.Token))
            {
                head.Append(h.Replace(upstream!.GetLeftPart(UriPartial.Authority), Url.GetLeftPart(UriPartial.Authority), StringComparison.Ordinal)).Append("\r\n");
                var colon = h.IndexOf(':', StringComparison.Ordinal);
                headers[h[..colon].Trim()] = h[(colon + 1)..].Trim();
            }

            head.Append("\r\n");
            await client.WriteAsync(Encoding.ASCII.GetBytes(head.ToString()), stop.Token);
            if (code is >= 100 and < 200)
            {
                continue;
            }

            Log.Enqueue((request.Method, request.Target, code));
            if (request.Method == "HEAD" || code is 204 or 304)
            {
                return false;
            }

            if (headers.TryGetValue("Content-Length", out var cl))
            {
                await client.WriteAsync(await upstreamReader.ExactAsync(long.Parse(cl, CultureInfo.InvariantCulture), stop.Token), stop.Token);
                return false;
            }

            if (headers.TryGetValue("Transfer-Encoding", out var te) && te.Contains("chunked", StringComparison.OrdinalIgnoreCase))
            {
                while (true)
                {
                    var sizeLine = await upstreamReader.LineAsync(stop.Token) ?? throw new IOException("upstream closed");
                    await client.WriteAsync(Encoding.ASCII.GetBytes(sizeLine + "\r\n"), stop.Token);
                    var size = Convert.ToInt64(sizeLine.Split(';')[0].Trim(), 16);
                    if (size == 0)
                    {
                        for (var t = await upstreamReader.LineAsync(stop.Token); ; t = await upstreamReader.LineAsync(stop.Token))
                        {
                            await client.WriteAsync(Encoding.ASCII.GetBytes((t ?? "") + "\r\n"), stop.Token);
                            if (string.IsNullOrEmpty(t))
                            {
                                return false;
                            }
                        }
                    }

                    await client.WriteAsync(await upstreamReader.ExactAsync(size + 2, stop.Token), stop.Token);
                }
            }

            await client.WriteAsync(await upstreamReader.RestAsync(stop.Token), stop.Token);
            return true; // body to the end of the connection
        }
        while (true);
    }

    /// <summary>Buffered reads of lines and byte counts from a connection.</summary>
    private sealed class Reader(Stream stream)
    {
        private readonly byte[] buffer = new byte[64 * 1024];
        private int start;
        private int end;

        public async Task<string?> LineAsync(CancellationToken token)
        {
            var line = new List<byte>();
            while (true)
            {
                if (start == end && !await FillAsync(token))
                {
                    return line.Count == 0 ? null : Encoding.ASCII.GetString(line.ToArray());
                }

                var b = buffer[start++];
                if (b == '\n')
                {
                    if (line.Count > 0 && line[^1] == '\r')
                    {
                        line.RemoveAt(line.Count - 1);
                    }

                    return Encoding.Latin1.GetString(line.ToArray());
                }

                line.Add(b);
            }
        }

        public async Task<byte[]> ExactAsync(long count, CancellationToken token)
        {
            var result = new byte[count];
            long done = 0;
            while (done < count)
            {
                if (start == end && !await FillAsync(token))
                {
                    throw new IOException("connection closed early");
                }

                var n = (int)Math.Min(end - start, count - done);
                Array.Copy(buffer, start, result, done, n);
                start += n;
                done += n;
            }

            return result;
        }

        public async Task<byte[]> RestAsync(CancellationToken token)
        {
            var all = new MemoryStream();
            all.Write(buffer, start, end - start);
            start = end;
            await stream.CopyToAsync(all, token);
            return all.ToArray();
        }

        private async Task<bool> FillAsync(CancellationToken token)
        {
            start = 0;
            end = await stream.ReadAsync(buffer, token);
            return end > 0;
        }
    }
}
