using System.Security.Cryptography;

namespace BlockBackup.Engine.ObjectStores;

/// <summary>Content handling shared by the HTTP object stores.</summary>
internal static class ObjectStoreContent
{
    public static string Hex(byte[] md5) => Convert.ToHexString(md5).ToLowerInvariant();

    /// <summary>An ETag as the hex MD5 it carries: quotes removed, lower case.</summary>
    public static string? NormalizeETag(string? etag) => etag?.Trim().Trim('"').ToLowerInvariant();

    /// <summary>
    /// Checks a seekable content stream holds exactly <paramref name="length"/> bytes from its
    /// position (nothing is sent otherwise) and returns the MD5 of those bytes, rewinding after.
    /// </summary>
    public static async Task<byte[]> Md5OfSeekableAsync(Stream content, long start, long length, string name, CancellationToken cancellationToken)
    {
        if (content is MemoryStream memory && memory.TryGetBuffer(out var whole) && start + length <= whole.Count)
        {
            // The backup pipeline hands its encoded object as a MemoryStream: digest it in place.
            return MD5.HashData(whole.AsSpan((int)start, (int)length));
        }

        using var md5 = IncrementalHash.CreateHash(HashAlgorithmName.MD5);
        var buffer = new byte[(int)Math.Min(1 << 20, Math.Max(1, length))];
        content.Position = start;
        long total = 0;
        while (total < length)
        {
            var n = await content.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, length - total)), cancellationToken).ConfigureAwait(false);
            if (n == 0)
            {
                throw ObjectNames.ShortContent(name, length, total);
            }

            md5.AppendData(buffer, 0, n);
            total += n;
        }

        content.Position = start;
        return md5.GetHashAndReset();
    }

    /// <summary>Seekable content must hold exactly the announced bytes from where it was given.</summary>
    public static void CheckSeekableLength(Stream content, long start, long length, string name)
    {
        var available = content.Length - start;
        if (available != length)
        {
            throw ObjectNames.ShortContent(name, length, Math.Max(0, available));
        }
    }

    /// <summary>Reads exactly <paramref name="count"/> bytes into <paramref name="buffer"/>; ObjectLengthMismatch when the content ends first.</summary>
    public static async Task ReadExactlyAsync(Stream content, byte[] buffer, int count, string name, long announced, long before, CancellationToken cancellationToken)
    {
        var done = 0;
        while (done < count)
        {
            var n = await content.ReadAsync(buffer.AsMemory(done, count - done), cancellationToken).ConfigureAwait(false);
            if (n == 0)
            {
                throw ObjectNames.ShortContent(name, announced, before + done);
            }

            done += n;
        }
    }

    /// <summary>After the announced bytes, a non-seekable content must be at its end.</summary>
    public static async Task CheckAtEndAsync(Stream content, string name, long announced, CancellationToken cancellationToken)
    {
        var probe = new byte[1];
        if (await content.ReadAsync(probe, cancellationToken).ConfigureAwait(false) != 0)
        {
            throw ObjectNames.ShortContent(name, announced, announced + 1);
        }
    }
}

/// <summary>
/// Exactly <c>length</c> bytes of a content stream, as an HTTP request body: never disposes the
/// stream it reads (a retry rewinds and reads it again), fails with ObjectLengthMismatch when the
/// content ends early or goes on past the announced length (the request is then aborted, so
/// nothing is stored), and can hash what it passes on.
/// </summary>
internal sealed class ContentWindow : Stream
{
    private readonly Stream inner;
    private readonly long length;
    private readonly string name;
    private readonly IncrementalHash? md5;
    private readonly bool contentEnds;
    private long sent;

    // contentEnds: the window is the end of the content (checked when it cannot seek); false for a part that more content follows.
    public ContentWindow(Stream inner, long length, string name, bool hash, bool contentEnds = true)
    {
        this.inner = inner;
        this.length = length;
        this.name = name;
        this.contentEnds = contentEnds;
        md5 = hash ? IncrementalHash.CreateHash(HashAlgorithmName.MD5) : null;
    }

    /// <summary>The MD5 of the bytes passed on (when hashing), once all were read.</summary>
    public byte[]? Md5 { get; private set; }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => length;
    public override long Position { get => sent; set => throw new NotSupportedException(); }

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (sent == length)
        {
            if (!inner.CanSeek && contentEnds)
            {
                await ObjectStoreContent.CheckAtEndAsync(inner, name, length, cancellationToken).ConfigureAwait(false);
            }

            Finish();
            return 0;
        }

        var n = await inner.ReadAsync(buffer[..(int)Math.Min(buffer.Length, length - sent)], cancellationToken).ConfigureAwait(false);
        if (n == 0)
        {
            throw ObjectNames.ShortContent(name, length, sent);
        }

        md5?.AppendData(buffer.Span[..n]);
        sent += n;
        if (sent == length)
        {
            Finish();
        }

        return n;
    }

    private void Finish()
    {
        if (md5 is not null && Md5 is null)
        {
            Md5 = md5.GetHashAndReset();
        }
    }

    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            md5?.Dispose();
        }

        base.Dispose(disposing);
    }
}

/// <summary>
/// A response body handed to the caller: limited to the bytes asked for, with bytes skipped first
/// when the server ignored the range, and disposing what owns the connection (the response) with
/// it. A body that breaks off (connection reset, premature end: an IOException) is resumed with a
/// ranged GET from the first byte not yet delivered, up to <see cref="MaxResumes"/> times, so a
/// 50 MiB object read over a flaky link does not fail a whole restore; the pipelines verify every
/// block they read, so bytes from a replaced object would not pass unnoticed.
/// </summary>
internal sealed class ResponseBodyStream : Stream
{
    /// <summary>Resumptions of one body; each reopening GET has the store's own retries besides.</summary>
    internal const int MaxResumes = 3;

    /// <summary>Opens the object again from an absolute offset for at most a length (null: to its end).</summary>
    public delegate Task<Stream> Reopen(long offset, long? length, CancellationToken cancellationToken);

    private Reopen? reopen;
    private readonly long start;
    private readonly long? length;
    private readonly string store;
    private readonly string name;
    private Stream inner;
    private IDisposable? owner;
    private long skip;
    private long delivered;
    private int resumes;

    /// <param name="inner">The body as the HTTP client reads it.</param>
    /// <param name="owner">What holds the connection (the response), disposed with the body.</param>
    /// <param name="skip">Bytes to drop first: the server answered 200 to a ranged request.</param>
    /// <param name="length">The bytes asked for, or null for the rest of the object.</param>
    /// <param name="start">The object offset this body was asked from (where a resumption counts from).</param>
    /// <param name="reopen">How to GET the rest again; null for a reopened body, whose IOException goes to the stream that reopened it.</param>
    /// <param name="store">The store's description, for errors.</param>
    /// <param name="name">The object's name, for errors.</param>
    public ResponseBodyStream(Stream inner, IDisposable? owner, long skip = 0, long? length = null, long start = 0, Reopen? reopen = null, string store = "", string name = "")
    {
        this.inner = inner;
        this.owner = owner;
        this.skip = skip;
        this.length = length;
        this.start = start;
        this.reopen = reopen;
        this.store = store;
        this.name = name;
    }

    private long Left => length is { } n ? n - delivered : long.MaxValue;

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        while (true)
        {
            try
            {
                if (skip > 0)
                {
                    var scratch = new byte[(int)Math.Min(1 << 16, skip)]; // rare: only when the server ignored a range
                    while (skip > 0)
                    {
                        var s = inner.Read(scratch, 0, (int)Math.Min(scratch.Length, skip));
                        if (s == 0)
                        {
                            return 0;
                        }

                        skip -= s;
                    }
                }

                if (Left == 0 || buffer.Length == 0)
                {
                    return 0;
                }

                var n = inner.Read(buffer[..(int)Math.Min(buffer.Length, Left)]);
                delivered += n;
                return n;
            }
            catch (IOException ex)
            {
                ResumeAsync(ex, CancellationToken.None).GetAwaiter().GetResult();
            }
        }
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (true)
        {
            try
            {
                if (skip > 0)
                {
                    var scratch = new byte[(int)Math.Min(1 << 16, skip)];
                    while (skip > 0)
                    {
                        var s = await inner.ReadAsync(scratch.AsMemory(0, (int)Math.Min(scratch.Length, skip)), cancellationToken).ConfigureAwait(false);
                        if (s == 0)
                        {
                            return 0;
                        }

                        skip -= s;
                    }
                }

                if (Left == 0 || buffer.Length == 0)
                {
                    return 0;
                }

                var n = await inner.ReadAsync(buffer[..(int)Math.Min(buffer.Length, Left)], cancellationToken).ConfigureAwait(false);
                delivered += n;
                return n;
            }
            catch (IOException ex)
            {
                await ResumeAsync(ex, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Replaces the broken body with a ranged GET from the first byte not delivered; throws a clear error past the budget.</summary>
    private async Task ResumeAsync(IOException broken, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (reopen is null)
        {
            // A reopened body: the stream that reopened it counts and resumes.
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(broken);
        }

        if (++resumes > MaxResumes)
        {
            throw ObjectStoreErrors.ReadBroken(store, name, start + delivered, MaxResumes, broken);
        }

        inner.Dispose();
        owner?.Dispose();
        owner = null;
        inner = Stream.Null;
        skip = 0; // the new body skips for itself if that server ignores the range too
        var rest = await reopen(start + delivered, Left == long.MaxValue ? null : Left, cancellationToken).ConfigureAwait(false);
        if (rest is ResponseBodyStream body)
        {
            body.reopen = null;
        }

        inner = rest;
    }

    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            inner.Dispose();
            owner?.Dispose();
        }

        base.Dispose(disposing);
    }
}
