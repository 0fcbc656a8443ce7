#!/usr/bin/env python3
"""The fair dedupe baseline: rmlint finds the duplicate sets, this issues
FIDEDUPERANGE itself, in batches.

    python3 bench/dedupe.py RMLINT.json

RMLINT.json is `rmlint -T df -o json:FILE DIRS...`. For every set of
identical files, the original is the source and up to 120 duplicates share
one ioctl (the kernel compares the bytes and shares the extents atomically);
files whose extents are already the original's (a previous pass) are
skipped after one FIEMAP. Prints, as JSON, the files deduplicated, those
already shared, and those the kernel refused.
"""
import fcntl
import json
import os
import struct
import sys

FIDEDUPERANGE = 0xC0189436
FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 1
BATCH = 120
CHUNK = 16 << 20
EXTENTS = 64


def extents(fd, size):
    """(logical, physical, length) of the file's extents, or None when
    there are more than EXTENTS (then it is not worth comparing)."""
    head = struct.pack("=QQLLLL", 0, size, FIEMAP_FLAG_SYNC, 0, EXTENTS, 0)
    buf = bytearray(head + bytes(56 * EXTENTS))
    fcntl.ioctl(fd, FIEMAP, buf)
    n = struct.unpack_from("=L", buf, 20)[0]
    if n >= EXTENTS:
        return None
    return [struct.unpack_from("=QQQ", buf, 32 + 56 * i) for i in range(n)]


def dedupe(src, size, dests):
    """Shares src's extents with every fd in dests; returns (done, refused)."""
    done = set()
    refused = set()
    off = 0
    while off < size:
        length = min(CHUNK, size - off)
        buf = bytearray(struct.pack("=QQHHL", off, length, len(dests), 0, 0))
        for fd in dests:
            buf += struct.pack("=qQQlL", fd, off, 0, 0, 0)
        fcntl.ioctl(src, FIDEDUPERANGE, buf)
        for i, fd in enumerate(dests):
            _, _, got, status, _ = struct.unpack_from("=qQQlL", buf, 24 + 32 * i)
            if status != 0 or got != length:
                refused.add(fd)
        off += length
    done = {fd for fd in dests if fd not in refused}
    return done, refused


def main():
    with open(sys.argv[1]) as f:
        entries = json.load(f)
    sets = {}
    for e in entries:
        if e.get("type") != "duplicate_file" or not e.get("size"):
            continue
        s = sets.setdefault(e["checksum"], [None, []])
        if e["is_original"]:
            s[0] = e
        else:
            s[1].append(e)
    stats = {"sets": 0, "deduplicated": 0, "already_shared": 0, "refused": 0}
    for orig, dups in sets.values():
        if orig is None or not dups:
            continue
        stats["sets"] += 1
        size = orig["size"]
        src = os.open(orig["path"], os.O_RDONLY)
        try:
            mine = extents(src, size)
            todo = []
            for d in dups:
                fd = os.open(d["path"], os.O_RDONLY)
                if mine is not None and extents(fd, size) == mine:
                    stats["already_shared"] += 1
                    os.close(fd)
                else:
                    todo.append(fd)
            for i in range(0, len(todo), BATCH):
                batch = todo[i : i + BATCH]
                done, refused = dedupe(src, size, batch)
                stats["deduplicated"] += len(done)
                stats["refused"] += len(refused)
                for fd in batch:
                    os.close(fd)
        finally:
            os.close(src)
    json.dump(stats, sys.stdout)
    print()


if __name__ == "__main__":
    main()
