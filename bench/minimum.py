#!/usr/bin/env python3
"""The physical minimum of a fleet, measured from the bots' own roots.

    python3 bench/minimum.py [--block N] ROOT...

Walks every ROOT (a bot's mounted root filesystem, say) without following
symlinks and prints, as JSON, what one copy of each distinct regular-file
content takes:

  apparent  the bytes of the distinct contents, counted once each;
  blocks    the same contents stored as one file each, in whole blocks of
            --block bytes (4096 on XFS and ext4): what the smallest
            file-per-content store could take on that filesystem;
  unique    of those blocks, the contents found under one ROOT only (a
            bot's own files, its logs): what is truly its own.

Directories, symlinks and metadata count nothing. Files are grouped by
size first; only sizes seen more than once are hashed.
"""
import argparse
import hashlib
import json
import os
import stat
import sys


def walk(root):
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    stack.append(e.path)
                elif stat.S_ISREG(st.st_mode):
                    yield e.path, st


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.digest()
            h.update(b)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--block", type=int, default=4096)
    ap.add_argument("roots", nargs="+")
    a = ap.parse_args()
    by_size = {}
    seen = set()
    files = 0
    for r, root in enumerate(a.roots):
        for path, st in walk(root):
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            files += 1
            by_size.setdefault(st.st_size, []).append((r, path))
    apparent = blocks = distinct = unique = 0
    for size, paths in by_size.items():
        if size == 0:
            continue
        where = {}
        if len(paths) == 1:
            where[None] = {paths[0][0]}
        else:
            for r, p in paths:
                where.setdefault(digest(p), set()).add(r)
        n = len(where)
        size_blocks = -(-size // a.block) * a.block
        distinct += n
        apparent += n * size
        blocks += n * size_blocks
        unique += size_blocks * sum(1 for roots in where.values() if len(roots) == 1)
    json.dump(
        {
            "files": files,
            "distinct": distinct,
            "apparent": apparent,
            "blocks": blocks,
            "unique": unique,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
