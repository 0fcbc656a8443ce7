#!/usr/bin/env python3
"""BLAKE3 (the store's hash) of every regular file under DIR, on all cores:
the reference a commit of content the store already holds is measured
against.

    .venv-tools/bin/python bench/blake3sum.py DIR

Prints the number of files and bytes hashed.
"""
import os
import stat
import sys

import blake3


def main():
    files = size = 0
    stack = [sys.argv[1]]
    while stack:
        d = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(e.path)
                elif stat.S_ISREG(st.st_mode):
                    with open(e.path, "rb") as f:
                        data = f.read()
                    blake3.blake3(data, max_threads=blake3.blake3.AUTO).digest()
                    files += 1
                    size += len(data)
    print(files, size)


if __name__ == "__main__":
    main()
