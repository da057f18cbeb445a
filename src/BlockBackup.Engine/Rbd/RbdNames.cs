using System.Text.RegularExpressions;
using BlockBackup.Engine.Errors;

namespace BlockBackup.Engine.Rbd;

/// <summary>An RBD image: pool, optional namespace, image name (validated: no separators, no option-like names).</summary>
public sealed partial record RbdImageRef(string Pool, string? Namespace, string Image)
{
    /// <summary>"pool/image" or "pool/namespace/image".</summary>
    public static RbdImageRef Parse(string spec)
    {
        var parts = (spec ?? string.Empty).Split('/');
        var image = parts switch
        {
            [var pool, var name] => new RbdImageRef(pool, null, name),
            [var pool, var ns, var name] => new RbdImageRef(pool, ns, name),
            _ => throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidRbdImage", $"'{spec}' is not an RBD image; write pool/image or pool/namespace/image.", spec),
        };
        RbdNames.Validate(image.Pool, "pool");
        if (image.Namespace is not null)
        {
            RbdNames.Validate(image.Namespace, "namespace");
        }

        RbdNames.Validate(image.Image, "image");
        return image;
    }

    /// <summary>The spec the rbd tool takes.</summary>
    public string Spec => Namespace is null ? $"{Pool}/{Image}" : $"{Pool}/{Namespace}/{Image}";

    public string SnapSpec(string snapshot) => $"{Spec}@{RbdNames.Validate(snapshot, "snapshot")}";

    public override string ToString() => Spec;
}

public static partial class RbdNames
{
    /// <summary>Names are passed as argv entries, never through a shell; still, no separators, control characters or leading '-'.</summary>
    public static string Validate(string name, string what)
    {
        if (string.IsNullOrEmpty(name) || name.Length > 250 || !Allowed().IsMatch(name))
        {
            throw new BackupException(BackupErrorKind.InvalidArgument, "InvalidRbdName",
                $"'{name}' is not a valid RBD {what} name (letters, digits, '.', '_', '-'; not starting with '-'; at most 250 characters).", name);
        }

        return name;
    }

    [GeneratedRegex(@"^[A-Za-z0-9_.][A-Za-z0-9_.\-]*$", RegexOptions.CultureInvariant)]
    private static partial Regex Allowed();
}
