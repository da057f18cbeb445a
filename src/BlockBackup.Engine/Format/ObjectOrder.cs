namespace BlockBackup.Engine.Format;

/// <summary>A backup's objects in volume order, which every sweep over a chain needs.</summary>
internal static class ObjectOrder
{
    /// <summary>
    /// The list itself when it is already in offset order (BlockBackup and Cinder write it so),
    /// else a sorted copy: no copy, nor LINQ's key buffers, for half a million objects in the usual case.
    /// </summary>
    public static IReadOnlyList<ObjectDescriptor> ByOffset(IReadOnlyList<ObjectDescriptor> objects)
    {
        for (var i = 1; i < objects.Count; i++)
        {
            if (objects is ObjectList list ? list.OffsetAt(i) < list.OffsetAt(i - 1) : objects[i].Offset < objects[i - 1].Offset)
            {
                return objects.OrderBy(o => o.Offset).ToArray(); // stable: equal offsets keep their listed order
            }
        }

        return objects;
    }
}
