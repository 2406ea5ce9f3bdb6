"""Walk an input tree: every regular file with its size and mtime, and every problem met.

Symlinked folders are followed once (loops are detected by device/inode), unreadable folders
and broken links are reported, never fatal.  ``exclude`` folders (the OUT folder when it sits
inside the input) are skipped.

A symbolic link whose target lies outside the input (a link to ``/`` would walk the whole
file system, ``/proc`` included) is listed and not followed unless ``follow_external``.  A file
or folder whose name is not valid UTF-8 is listed (with ``\\xNN`` escapes in the tables) and
not read: nothing downstream (the cache, the tables, heudiconv's paths) could name it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass
class Discovered:
    files: list[tuple[str, int, int]] = field(default_factory=list)  # path, size, mtime_ns
    errors: list[tuple[str, str]] = field(default_factory=list)  # path, reason
    # every folder walked: path, device, inode, mtime_ns (see FactsCache.put_folders)
    folders: list[tuple[str, int, int, int]] = field(default_factory=list)


NOT_UTF8 = "name is not valid UTF-8: not read (rename it to read it)"
EXTERNAL = "symlink leads out of the input (to {}): not followed (analyze --follow-external-links follows it)"


def _bad_name(name: str) -> bool:
    if name.isascii():
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def discover(root: str, exclude: tuple[str, ...] = (), follow_external: bool = False) -> Discovered:
    out = Discovered()
    root = os.path.abspath(root)
    real_root = os.path.realpath(root)
    inside = real_root.rstrip(os.sep) + os.sep
    excl: set[tuple[int, int]] = set()  # (device, inode) of excluded folders
    for e in exclude:
        try:
            st = os.stat(e)
            excl.add((st.st_dev, st.st_ino))
        except OSError:
            pass
    if os.path.isfile(root):
        st = os.stat(root)
        out.files.append((root, st.st_size, st.st_mtime_ns))
        return out
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            st = os.stat(d)
        except OSError as exc:
            out.errors.append((d, f"cannot stat folder: {exc.strerror or exc}"))
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            out.errors.append((d, "symlink loop or repeated folder (skipped)"))
            continue
        seen.add(key)
        if key in excl:
            continue
        out.folders.append((d, st.st_dev, st.st_ino, st.st_mtime_ns))
        try:
            entries = list(os.scandir(d))
        except OSError as exc:
            out.errors.append((d, f"unreadable folder: {exc.strerror or exc}"))
            continue
        subdirs = []
        add = out.files.append
        for e in entries:
            try:
                if _bad_name(e.name):
                    out.errors.append((e.path, NOT_UTF8))
                    continue
                if e.is_symlink() and not follow_external:
                    target = os.path.realpath(e.path)
                    if target != real_root and not target.startswith(inside):
                        out.errors.append((e.path, EXTERNAL.format(target)))
                        continue
                # regular files first: d_type answers without a syscall, then one stat
                if e.is_file():
                    s = e.stat()
                    add((e.path, s.st_size, s.st_mtime_ns))
                    continue
                if e.is_dir():
                    subdirs.append(e.path)
                elif e.is_symlink():
                    out.errors.append((e.path, "broken symlink"))
                else:
                    out.errors.append((e.path, "not a regular file"))
            except OSError as exc:
                out.errors.append((e.path, f"cannot stat: {exc.strerror or exc}"))
        stack.extend(sorted(subdirs, reverse=True))
    out.files.sort()
    return out
