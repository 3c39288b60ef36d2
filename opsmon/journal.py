"""Whether a SQLite database's readers hold back its writers: a rollback journal does, WAL does not."""

from __future__ import annotations

import os
import stat
from pathlib import Path

_MAGIC = b"SQLite format 3\x00"
_WAL_VERSION = 2  # the file format's write and read versions (header bytes 18 and 19): 1 rollback, 2 WAL


def uses_rollback_journal(path: str | Path) -> bool:
    """True when the database at `path` is in a rollback-journal mode (DELETE, TRUNCATE, PERSIST), where a
    read holds back every commit until it ends; False in WAL mode. Read from the file's header, without
    opening the database or taking a lock. OSError when it cannot be read, ValueError when it is not SQLite."""
    # O_NONBLOCK: a FIFO in the database's place must not hang the caller in open().
    with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise ValueError(f"{path} is not a regular file")
        header = file.read(20)
    if not header:  # an empty file is a database not yet written, in SQLite's default mode
        return True
    if len(header) < 20 or not header.startswith(_MAGIC):
        raise ValueError(f"{path} is not a SQLite database")
    return header[18] != _WAL_VERSION
