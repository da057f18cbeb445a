namespace BlockBackup.Engine.Nbd;

/// <summary>The numbers of the NBD protocol (the NBD project's doc/proto.md) that the server speaks.</summary>
internal static class NbdProtocol
{
    public const ulong NbdMagic = 0x4e42444d41474943; // "NBDMAGIC"
    public const ulong IHaveOpt = 0x49484156454F5054; // "IHAVEOPT"
    public const ulong OptionReplyMagic = 0x3e889045565a9;
    public const uint RequestMagic = 0x25609513;
    public const uint SimpleReplyMagic = 0x67446698;

    // Handshake flags (server) and client flags.
    public const ushort FlagFixedNewstyle = 1;
    public const ushort FlagNoZeroes = 2;
    public const uint ClientFlagFixedNewstyle = 1;
    public const uint ClientFlagNoZeroes = 2;

    // Options.
    public const uint OptExportName = 1;
    public const uint OptAbort = 2;
    public const uint OptList = 3;
    public const uint OptInfo = 6;
    public const uint OptGo = 7;
    public const uint OptStructuredReply = 8;
    public const uint OptListMetaContext = 9;
    public const uint OptSetMetaContext = 10;

    // Option replies.
    public const uint RepAck = 1;
    public const uint RepServer = 2;
    public const uint RepInfo = 3;
    public const uint RepMetaContext = 4;
    public const uint RepErrUnsup = 0x80000001;
    public const uint RepErrInvalid = 0x80000003;
    public const uint RepErrUnknown = 0x80000006;

    // Info types.
    public const ushort InfoExport = 0;
    public const ushort InfoBlockSize = 3;

    // Transmission flags.
    public const ushort TransHasFlags = 1;
    public const ushort TransReadOnly = 2;
    public const ushort TransSendFlush = 4;
    public const ushort TransCanMultiConn = 256;

    // Commands.
    public const ushort CmdRead = 0;
    public const ushort CmdWrite = 1;
    public const ushort CmdDisc = 2;
    public const ushort CmdFlush = 3;
    public const ushort CmdBlockStatus = 7;
    public const ushort CmdFlagReqOne = 8;

    // Structured replies (NBD_OPT_STRUCTURED_REPLY) and the base:allocation context.
    public const uint StructuredReplyMagic = 0x668e33ef;
    public const ushort ReplyFlagDone = 1;
    public const ushort ReplyTypeOffsetData = 1;
    public const ushort ReplyTypeBlockStatus = 5;
    public const ushort ReplyTypeError = 0x8001;
    public const string AllocationContext = "base:allocation";
    public const uint AllocationContextId = 1;
    public const uint StateHole = 1;
    public const uint StateZero = 2;

    // Errors (errno values on the wire).
    public const uint EPerm = 1;
    public const uint EIO = 5;
    public const uint ENoMem = 12;
    public const uint EInval = 22;
    public const uint ENoSpc = 28;

    /// <summary>The smallest block a client may address: 512 bytes, since filesystems on NBD failed to mount with a larger minimum in another tool.</summary>
    public const int MinimumBlockSize = 512;

    /// <summary>The largest request served (and advertised): a bigger one costs the server that much memory.</summary>
    public const int MaximumRequest = 32 << 20;

    /// <summary>The longest option payload accepted; a client sending more is dropped rather than buffered.</summary>
    public const int MaximumOptionLength = 64 << 10;
}
