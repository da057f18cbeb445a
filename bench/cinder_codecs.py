#!/usr/bin/env python3
"""Times Python's bz2 and zlib (the modules Cinder's chunked driver compresses with) on the inputs
`bbk bench-codec --dir DIR` wrote, for comparison with BlockBackup's own figures."""
import bz2, sys, time, zlib
from pathlib import Path

directory = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
print(f"{'codec':5} {'input':11} {'ratio':>7} {'encode':>9} {'MiB/s':>7} {'decode':>9} {'MiB/s':>7}")
for codec, compress, decompress in (("bz2", lambda d: bz2.compress(d, 9), bz2.decompress), ("zlib", lambda d: zlib.compress(d, 1), zlib.decompress)):
    for name in ("repetitive", "random", "json-log"):
        data = (directory / f"{name}.bin").read_bytes()
        mib = len(data) / 1048576
        t = time.perf_counter(); packed = compress(data); encode = time.perf_counter() - t
        t = time.perf_counter(); assert decompress(packed) == data; decode = time.perf_counter() - t
        print(f"{codec:5} {name:11} {len(packed) / len(data):7.1%} {encode:8.3f}s {mib / encode:7.1f} {decode:8.3f}s {mib / decode:7.1f}")
