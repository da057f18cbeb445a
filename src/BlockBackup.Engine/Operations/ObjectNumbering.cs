namespace BlockBackup.Engine.Operations;

/// <summary>
/// Hands out object numbers in volume order while ranges are processed in parallel. Objects on
/// object storage cannot be renamed, so each is stored under its final Cinder name
/// (<c>prefix-00001</c>… in offset order); a range knows how many objects it becomes once its
/// blocks are hashed, and takes its numbers after every earlier range has taken theirs. Ranges
/// are handed out in order, so a worker waits at most for the others' hashing, never their uploads.
/// </summary>
internal sealed class ObjectNumbering(CancellationToken cancellationToken)
{
    private readonly object _gate = new();
    private int _nextRange;
    private int _nextNumber = 1;
    private bool _failed;

    /// <summary>The first of <paramref name="count"/> numbers for range <paramref name="range"/>, once ranges before it have theirs.</summary>
    public int Reserve(int range, int count)
    {
        lock (_gate)
        {
            while (_nextRange != range)
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (_failed)
                {
                    throw new OperationCanceledException("An earlier range failed; the backup stops.");
                }

                Monitor.Wait(_gate, TimeSpan.FromMilliseconds(100));
            }

            var first = _nextNumber;
            _nextNumber += count;
            _nextRange++;
            Monitor.PulseAll(_gate);
            return first;
        }
    }

    /// <summary>A range failed and will never reserve: the ranges waiting behind it stop.</summary>
    public void Fail()
    {
        lock (_gate)
        {
            _failed = true;
            Monitor.PulseAll(_gate);
        }
    }
}
