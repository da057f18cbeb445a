using System.Text;
using BlockBackup.Engine.Errors;
using BlockBackup.Engine.ObjectStores;
using Xunit;

namespace BlockBackup.Engine.Tests;

/// <summary>
/// The one contract every object store keeps (restic's backend test suite is the model): each
/// store's test class derives from this and runs all of it. A derived class whose store needs a
/// service declares <c>public static string? SkipReason</c>: when it is not null (the service is not
/// configured) every contract test of that class is skipped with it (see ContractFactAttribute).
/// </summary>
public abstract class ObjectStoreContract : IDisposable
{
    protected abstract IObjectStore Store { get; }

    public virtual void Dispose() => GC.SuppressFinalize(this);

    private static MemoryStream Bytes(string text) => new(Encoding.UTF8.GetBytes(text));

    private async Task<string> Read(string name, long offset = 0, long? length = null)
    {
        await using var stream = await Store.GetAsync(name, offset, length);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        return await reader.ReadToEndAsync();
    }

    private async Task Put(string name, string text, bool createOnly = false) =>
        await Store.PutAsync(name, Bytes(text), Encoding.UTF8.GetByteCount(text), new PutOptions(createOnly), CancellationToken.None);

    [ContractFact]
    public async Task AnObjectReadsBackWholeAndByRange()
    {
        await Put("volume_1/20260101000000/az_nova_backup_2-00001", "0123456789");
        Assert.Equal("0123456789", await Read("volume_1/20260101000000/az_nova_backup_2-00001"));
        Assert.Equal("345", await Read("volume_1/20260101000000/az_nova_backup_2-00001", 3, 3));
        Assert.Equal("789", await Read("volume_1/20260101000000/az_nova_backup_2-00001", 7));
        Assert.Equal(10, (await Store.StatAsync("volume_1/20260101000000/az_nova_backup_2-00001"))!.Size);
    }

    [ContractFact]
    public async Task CreateOnlyNeverReplacesAndAPlainPutDoes()
    {
        await Put("a/_metadata", "first", createOnly: true);
        var ex = await Assert.ThrowsAsync<BackupException>(() => Put("a/_metadata", "second", createOnly: true));
        Assert.Equal("ObjectExists", ex.ErrorId);
        Assert.Equal("first", await Read("a/_metadata"));
        await Put("a/_metadata", "third");
        Assert.Equal("third", await Read("a/_metadata"));
    }

    [ContractFact]
    public async Task ContentShorterThanAnnouncedStoresNothing()
    {
        var ex = await Assert.ThrowsAsync<BackupException>(() => Store.PutAsync("b/x", Bytes("abc"), 10, PutOptions.Default, CancellationToken.None));
        Assert.Equal("ObjectLengthMismatch", ex.ErrorId);
        Assert.Null(await Store.StatAsync("b/x"));
        Assert.Empty(await Store.ListAsync("b/").ToListAsync());
    }

    [ContractFact]
    public async Task ListingIsByPrefixInOrdinalOrder()
    {
        foreach (var name in new[] { "v/p-00002", "v/p-00001", "v/p_sha256file", "v/q-00001", "w/p-00001", "v/p/deeper" })
        {
            await Put(name, name);
        }

        Assert.Equal(["v/p-00001", "v/p-00002", "v/p/deeper", "v/p_sha256file"], (await Store.ListAsync("v/p").ToListAsync()).Select(o => o.Name));
        Assert.Equal(["v/p-00001", "v/p-00002", "v/p/deeper", "v/p_sha256file", "v/q-00001"], (await Store.ListAsync("v/").ToListAsync()).Select(o => o.Name));
        Assert.Equal(6, (await Store.ListAsync("").ToListAsync()).Count);
        Assert.Equal(18, (await Store.ListAsync("v/p-").ToListAsync()).Sum(o => o.Size));   // two 9-byte objects
    }

    [ContractFact]
    public async Task DeletingRemovesAndDeletingNothingIsFine()
    {
        await Put("c/x", "x");
        await Store.DeleteAsync("c/x");
        Assert.Null(await Store.StatAsync("c/x"));
        await Store.DeleteAsync("c/x");
        await Store.DeleteAsync("never/was");
        var ex = await Assert.ThrowsAsync<BackupException>(() => Store.GetAsync("c/x"));
        Assert.Equal("ObjectNotFound", ex.ErrorId);
    }

    [ContractTheory]
    [InlineData("../outside")]
    [InlineData("/absolute")]
    [InlineData("a/../../b")]
    [InlineData("a//b")]
    [InlineData("a/./b")]
    [InlineData("a\\b")]
    [InlineData("")]
    public async Task NamesThatCouldLeaveTheStoreAreRefusedBeforeAnythingHappens(string name)
    {
        var ex = await Assert.ThrowsAsync<BackupException>(() => Put(name, "x"));
        Assert.Equal("InvalidObjectName", ex.ErrorId);
        Assert.Equal("InvalidObjectName", (await Assert.ThrowsAsync<BackupException>(() => Store.DeleteAsync(name))).ErrorId);
    }

    [ContractFact]
    public async Task ManyPutsAtOnceAllLand()
    {
        var names = Enumerable.Range(1, 64).Select(i => $"d/volume_x-{i:D5}").ToList();
        await Parallel.ForEachAsync(names, new ParallelOptions { MaxDegreeOfParallelism = Store.Properties.Connections }, async (name, token) =>
            await Store.PutAsync(name, Bytes(name), Encoding.UTF8.GetByteCount(name), PutOptions.Default, token));
        Assert.Equal(names, (await Store.ListAsync("d/").ToListAsync()).Select(o => o.Name));
        Assert.Equal(names[41], await Read(names[41]));
    }
}

public sealed class MemoryObjectStoreTests : ObjectStoreContract
{
    protected override IObjectStore Store { get; } = new MemoryObjectStore();
}

public sealed class PosixObjectStoreTests : ObjectStoreContract
{
    private readonly Scratch scratch = new();

    public PosixObjectStoreTests() => Store = new PosixObjectStore(scratch.RepoPath);

    protected override IObjectStore Store { get; }

    public override void Dispose()
    {
        scratch.Dispose();
        base.Dispose();
    }

    [Fact]
    public async Task NoTemporaryFileIsVisibleOrLeftAndEmptyDirectoriesGo()
    {
        await Store.PutAsync("e/f/object", new MemoryStream([1, 2, 3]), 3, PutOptions.Default, CancellationToken.None);
        Assert.Equal(["object"], Directory.GetFiles(Path.Combine(scratch.RepoPath, "e", "f")).Select(Path.GetFileName));
        await Store.DeleteAsync("e/f/object");
        Assert.False(Directory.Exists(Path.Combine(scratch.RepoPath, "e")));
        Assert.True(Directory.Exists(scratch.RepoPath));
    }

    [Fact]
    public async Task NothingIsReadWrittenOrDeletedThroughASymbolicLink()
    {
        if (OperatingSystem.IsWindows())
        {
            return; // links need a privilege there
        }

        var outside = Directory.CreateDirectory(scratch.PathOf("outside")).FullName;
        File.WriteAllText(Path.Combine(outside, "victim"), "keep");
        Directory.CreateSymbolicLink(Path.Combine(scratch.RepoPath, "linked"), outside);
        Assert.Equal("ObjectPathIsSymbolicLink", (await Assert.ThrowsAsync<BackupException>(() => Store.DeleteAsync("linked/victim"))).ErrorId);
        Assert.Equal("ObjectPathIsSymbolicLink", (await Assert.ThrowsAsync<BackupException>(() => Store.GetAsync("linked/victim"))).ErrorId);
        Assert.Equal("ObjectPathIsSymbolicLink", (await Assert.ThrowsAsync<BackupException>(() =>
            Store.PutAsync("linked/new", new MemoryStream([1]), 1, PutOptions.Default, CancellationToken.None))).ErrorId);
        Assert.Empty(await Store.ListAsync("").ToListAsync());
        Assert.Equal(["victim"], Directory.GetFiles(outside).Select(Path.GetFileName));
    }
}
