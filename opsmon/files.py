"""Safe files: atomic writes made durable, advisory locks, and opening exactly the file named (no link followed)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Iterator
from urllib.parse import quote


class UnsafePath(OSError):
    """A path opsmon would write through, lock or empty is a link or not the kind of file it makes:
    refused, by name, and left as it is."""


def describe_kind(path: Path) -> str:
    """What is at `path`, as a person would say it: a link (and where to), a folder, a regular file..."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return "missing"
    if stat.S_ISLNK(info.st_mode):
        return f"a symbolic link to {os.readlink(path)}"
    if stat.S_ISREG(info.st_mode):
        return "a regular file" if info.st_nlink == 1 else f"a file with {info.st_nlink} names (hard links)"
    return "a folder" if stat.S_ISDIR(info.st_mode) else "a special file"


def _refused(path: Path, wanted: str) -> UnsafePath:
    return UnsafePath(f"{path} is {describe_kind(path)}, not {wanted}: opsmon never follows or empties what it did not "
                      "make; nothing was changed (move it away to go on)")


def open_regular(path: Path, flags: int, mode: int = 0o644) -> int:
    """os.open of a regular file of its own that never follows a link at `path` (UnsafePath when it is
    one, a second name of another file, a folder, a pipe or a device): a planted link must not make
    opsmon truncate or lock its target."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            raise _refused(path, "a regular file") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        raise _refused(path, "a regular file of its own")
    return fd


def own_directory(path: Path) -> Path:
    """`path` as a real folder, made when missing; UnsafePath when it is a link or not a folder, so
    nothing is written into, or removed from, a folder a link points at."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir()
    if not stat.S_ISDIR(os.lstat(path).st_mode):
        raise _refused(path, "a folder")
    return path


def is_regular(path: Path) -> bool:
    """A regular file itself, not a link to one (a cleanup removes only these, or links it may drop)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def is_real_directory(path: Path) -> bool:
    """A folder itself, not a link to one: a cleanup never descends a link."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def same_file(a: Path, b: Path) -> bool:
    """One file, however each side spells it: through a link, relatively, or by a hard link's other name."""
    return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))


def sqlite_uri(path: Path, mode: str) -> str:
    """The SQLite URI of exactly `path` (`mode` ro, rw or rwc): `#`, `?`, `%` and spaces in a name are
    escaped, so they never cut the path short or open another file."""
    return f"file:{quote(os.fsencode(Path(path).absolute()))}?mode={mode}"


def write_atomically(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write, fsync, rename, fsync the folder: readers see the old file or the new one, never a part,
    and a power cut cannot undo the rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp opens with O_CREAT | O_EXCL | O_NOFOLLOW: a link planted at the temporary name is never
    # written through, and the rename replaces a link at `path` itself, never its target.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def write_json_atomically(path: Path, document: object, mode: int | None = None) -> None:
    """A JSON document written with write_atomically (indented, keys sorted: diffs stay readable)."""
    write_atomically(path, json.dumps(document, indent=2, sort_keys=True).encode(), mode)


def fsync_dir(directory: Path) -> None:
    """Make a rename in `directory` durable: without it a power cut can undo the rename."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path` (created when missing) while the block runs; the kernel
    drops it when the holder dies, so a killed process never leaves it held."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_regular(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
