using System.ComponentModel;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;

namespace BlockBackup.Engine.Configuration;

/// <summary>
/// DPAPI (CryptProtectData/CryptUnprotectData of crypt32) for the current user, without the
/// System.Security.Cryptography.ProtectedData package: what is protected here only the same
/// Windows user on the same machine (or with a roaming profile) can unprotect. Failures are
/// <see cref="Win32Exception"/>s.
/// </summary>
[SupportedOSPlatform("windows")]
internal static unsafe partial class WindowsDataProtection
{
    private const int CryptProtectUiForbidden = 0x1;

    // Bound into every blob: a DPAPI blob of another program cannot be passed off as a secret here.
    private static readonly byte[] Entropy = "BlockBackup registered repository secret, v1"u8.ToArray();

    [StructLayout(LayoutKind.Sequential)]
    private struct DataBlob
    {
        public int Size;
        public byte* Data;
    }

    [LibraryImport("crypt32.dll", SetLastError = true)]
    [return: MarshalAs(UnmanagedType.Bool)]
    private static partial bool CryptProtectData(DataBlob* dataIn, char* description, DataBlob* entropy, nint reserved, nint prompt, int flags, DataBlob* dataOut);

    [LibraryImport("crypt32.dll", SetLastError = true)]
    [return: MarshalAs(UnmanagedType.Bool)]
    private static partial bool CryptUnprotectData(DataBlob* dataIn, char** description, DataBlob* entropy, nint reserved, nint prompt, int flags, DataBlob* dataOut);

    [LibraryImport("kernel32.dll")]
    private static partial nint LocalFree(nint memory);

    public static byte[] Protect(byte[] plain) => Transform(plain, protect: true);

    public static byte[] Unprotect(byte[] blob) => Transform(blob, protect: false);

    private static byte[] Transform(byte[] input, bool protect)
    {
        if (input.Length == 0)
        {
            throw new ArgumentException("Nothing to transform.", nameof(input));
        }

        fixed (byte* data = input)
        fixed (byte* entropy = Entropy)
        {
            var inBlob = new DataBlob { Size = input.Length, Data = data };
            var entropyBlob = new DataBlob { Size = Entropy.Length, Data = entropy };
            var outBlob = default(DataBlob);
            var ok = protect
                ? CryptProtectData(&inBlob, null, &entropyBlob, 0, 0, CryptProtectUiForbidden, &outBlob)
                : CryptUnprotectData(&inBlob, null, &entropyBlob, 0, 0, CryptProtectUiForbidden, &outBlob);
            if (!ok)
            {
                throw new Win32Exception(Marshal.GetLastPInvokeError());
            }

            try
            {
                return new ReadOnlySpan<byte>(outBlob.Data, outBlob.Size).ToArray();
            }
            finally
            {
                if (outBlob.Data != null)
                {
                    new Span<byte>(outBlob.Data, outBlob.Size).Clear();
                    LocalFree((nint)outBlob.Data);
                }
            }
        }
    }
}
