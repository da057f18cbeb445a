using System.Runtime.InteropServices;
using BlockBackup.Engine.Errors;

namespace BlockBackup.Engine.Compression;

/// <summary>
/// zstd through the system's libzstd (Debian: libzstd1). No maintained managed zstd package is
/// available to this project, and the native library is the fastest anyway; it is loaded
/// lazily so that machines without it only fail when a zstd object is actually met.
/// </summary>
internal static unsafe class Zstd
{
    private static readonly Lazy<Api?> Loaded = new(Load);

    public static bool IsAvailable => Loaded.Value is not null;

    private sealed class Api
    {
        public delegate* unmanaged<nuint, nuint> CompressBound;
        public delegate* unmanaged<nuint, uint> IsError;
        public delegate* unmanaged<nuint, sbyte*> GetErrorName;
        public delegate* unmanaged<nint> CreateDStream;
        public delegate* unmanaged<nint, nuint> FreeDStream;
        public delegate* unmanaged<nint, nuint> InitDStream;
        public delegate* unmanaged<nint, Buffer*, Buffer*, nuint> DecompressStream;
        public delegate* unmanaged<nuint> DStreamInSize;
        public delegate* unmanaged<nint> CreateCCtx;
        public delegate* unmanaged<nint, nuint> FreeCCtx;
        public delegate* unmanaged<nint, int, int, nuint> CCtxSetParameter;
        public delegate* unmanaged<nint, ulong, nuint> CCtxSetPledgedSrcSize;
        public delegate* unmanaged<nint, Buffer*, Buffer*, int, nuint> CompressStream2;
    }

    [StructLayout(LayoutKind.Sequential)]
    internal struct Buffer
    {
        public void* Pointer;
        public nuint Size;
        public nuint Position;
    }

    private static Api? Load()
    {
        string[] names = OperatingSystem.IsWindows() ? ["libzstd.dll", "zstd.dll"] : OperatingSystem.IsMacOS() ? ["libzstd.1.dylib", "libzstd.dylib"] : ["libzstd.so.1", "libzstd.so"];
        foreach (var name in names)
        {
            if (!NativeLibrary.TryLoad(name, out var lib))
            {
                continue;
            }

            try
            {
                return new Api
                {
                    CompressBound = (delegate* unmanaged<nuint, nuint>)NativeLibrary.GetExport(lib, "ZSTD_compressBound"),
                    IsError = (delegate* unmanaged<nuint, uint>)NativeLibrary.GetExport(lib, "ZSTD_isError"),
                    GetErrorName = (delegate* unmanaged<nuint, sbyte*>)NativeLibrary.GetExport(lib, "ZSTD_getErrorName"),
                    CreateDStream = (delegate* unmanaged<nint>)NativeLibrary.GetExport(lib, "ZSTD_createDStream"),
                    FreeDStream = (delegate* unmanaged<nint, nuint>)NativeLibrary.GetExport(lib, "ZSTD_freeDStream"),
                    InitDStream = (delegate* unmanaged<nint, nuint>)NativeLibrary.GetExport(lib, "ZSTD_initDStream"),
                    DecompressStream = (delegate* unmanaged<nint, Buffer*, Buffer*, nuint>)NativeLibrary.GetExport(lib, "ZSTD_decompressStream"),
                    DStreamInSize = (delegate* unmanaged<nuint>)NativeLibrary.GetExport(lib, "ZSTD_DStreamInSize"),
                    CreateCCtx = (delegate* unmanaged<nint>)NativeLibrary.GetExport(lib, "ZSTD_createCCtx"),
                    FreeCCtx = (delegate* unmanaged<nint, nuint>)NativeLibrary.GetExport(lib, "ZSTD_freeCCtx"),
                    CCtxSetParameter = (delegate* unmanaged<nint, int, int, nuint>)NativeLibrary.GetExport(lib, "ZSTD_CCtx_setParameter"),
                    CCtxSetPledgedSrcSize = (delegate* unmanaged<nint, ulong, nuint>)NativeLibrary.GetExport(lib, "ZSTD_CCtx_setPledgedSrcSize"),
                    CompressStream2 = (delegate* unmanaged<nint, Buffer*, Buffer*, int, nuint>)NativeLibrary.GetExport(lib, "ZSTD_compressStream2"),
                };
            }
            catch (EntryPointNotFoundException)
            {
            }
        }

        return null;
    }

    private static Api Require(string what) => Loaded.Value ?? throw new BackupException(BackupErrorKind.NotSupported, "ZstdUnavailable",
        $"{what} needs zstd, but the zstd library (libzstd.so.1 / libzstd.dll) is not installed on this machine. Install it (Debian/Ubuntu: apt-get install libzstd1) or choose another compression.", what);

    private const int CompressionLevelParameter = 100; // ZSTD_c_compressionLevel
    private const int EndContinue = 0; // ZSTD_e_continue
    private const int EndFrame = 2; // ZSTD_e_end

    /// <summary>
    /// One zstd frame of <paramref name="source"/> into <paramref name="destination"/>; -1 when it
    /// does not fit. Streamed in slices of at most <paramref name="slice"/> bytes with
    /// <paramref name="cancellationToken"/> checked between them (level 19 spends seconds on one
    /// object). The pledged size puts the content size in the frame header, as ZSTD_compress
    /// does: python-zstd's decompress needs it.
    /// </summary>
    public static int Compress(ReadOnlySpan<byte> source, Span<byte> destination, int level, int slice, CancellationToken cancellationToken)
    {
        var api = Require("zstd compression");
        var cctx = api.CreateCCtx();
        if (cctx == 0)
        {
            throw new OutOfMemoryException("libzstd could not allocate a compression context.");
        }

        try
        {
            Check(api, api.CCtxSetParameter(cctx, CompressionLevelParameter, level));
            Check(api, api.CCtxSetPledgedSrcSize(cctx, (ulong)source.Length));
            fixed (byte* s = source)
            fixed (byte* d = destination)
            {
                var output = new Buffer { Pointer = d, Size = (nuint)destination.Length };
                for (var pos = 0; ; pos += slice)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var last = pos + slice >= source.Length;
                    var input = new Buffer { Pointer = s + pos, Size = (nuint)Math.Min(slice, source.Length - pos) };
                    while (true)
                    {
                        var r = api.CompressStream2(cctx, &output, &input, last ? EndFrame : EndContinue);
                        if (api.IsError(r) != 0)
                        {
                            return -1; // in practice only "destination buffer is too small"
                        }

                        var done = last ? r == 0 : input.Position == input.Size;
                        if (done)
                        {
                            break;
                        }

                        if (output.Position == output.Size)
                        {
                            return -1; // not smaller than the input: stored raw
                        }
                    }

                    if (last)
                    {
                        return (int)output.Position;
                    }
                }
            }
        }
        finally
        {
            api.FreeCCtx(cctx);
        }
    }

    private static void Check(Api api, nuint result)
    {
        if (api.IsError(result) != 0)
        {
            throw new InvalidOperationException($"libzstd refused a compression parameter: {new string(api.GetErrorName(result))}");
        }
    }

    public static Stream OpenDecompressor(Stream compressed, string objectName)
    {
        var api = Require($"Object '{objectName}' (zstd)");
        return new DecompressStream(api, compressed, objectName);
    }

    private sealed class DecompressStream : DecompressingStream
    {
        private readonly Api _api;
        private readonly Stream _input;
        private readonly string _name;
        private readonly byte[] _inBuffer;
        private nint _stream;
        private int _inPos;
        private int _inLen;
        private bool _inputEnded;
        private nuint _lastHint = 1;

        public DecompressStream(Api api, Stream input, string name)
        {
            _api = api;
            _input = input;
            _name = name;
            _inBuffer = new byte[(int)api.DStreamInSize()];
            _stream = api.CreateDStream();
            api.InitDStream(_stream);
        }

        public override int Read(Span<byte> buffer)
        {
            if (buffer.IsEmpty)
            {
                return 0;
            }

            while (true)
            {
                if (_inPos == _inLen && !_inputEnded)
                {
                    _inLen = _input.Read(_inBuffer, 0, _inBuffer.Length);
                    _inPos = 0;
                    _inputEnded = _inLen == 0;
                }

                if (_inputEnded && _inPos == _inLen)
                {
                    if (_lastHint != 0)
                    {
                        throw new InvalidDataException($"zstd data of object '{_name}' is truncated");
                    }

                    return 0;
                }

                fixed (byte* inp = _inBuffer)
                fixed (byte* outp = buffer)
                {
                    var ib = new Buffer { Pointer = inp + _inPos, Size = (nuint)(_inLen - _inPos) };
                    var ob = new Buffer { Pointer = outp, Size = (nuint)buffer.Length };
                    var r = _api.DecompressStream(_stream, &ob, &ib);
                    if (_api.IsError(r) != 0)
                    {
                        throw new InvalidDataException($"zstd data of object '{_name}' is corrupt: {new string(_api.GetErrorName(r))}");
                    }

                    _lastHint = r;
                    _inPos += (int)ib.Position;
                    if (ob.Position > 0)
                    {
                        return (int)ob.Position;
                    }
                }
            }
        }

        protected override void Dispose(bool disposing)
        {
            if (_stream != 0)
            {
                _api.FreeDStream(_stream);
                _stream = 0;
            }

            if (disposing)
            {
                _input.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
