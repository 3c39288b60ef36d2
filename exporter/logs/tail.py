"""Following one log file across rotation (by rename or copytruncate) and truncation, by inode, size and fingerprint."""

from __future__ import annotations

import logging
import os
import re
import stat as stat_module
from pathlib import Path

log = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
# The last bytes read are kept and compared before reading on: a file truncated and written past
# our offset again (copytruncate between two scrapes) is noticed although it is not smaller.
FINGERPRINT_BYTES = 64
# Names logrotate gives the copy of app.log: app.log.1, app.log-20261203 (a compressed one cannot be
# compared with what was read).
ROTATED_SUFFIX = re.compile(r"[.-]\d[\d.-]*")


class SourceError(Exception):
    """This file cannot be read now; the message says why."""


def open_regular_file(path: Path):
    """The file opened for reading in binary; SourceError when it is not a regular file. O_NONBLOCK: a FIFO
    put in the file's place must not hang the scrape in open()."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    if not stat_module.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SourceError("is not a regular file")
    return os.fdopen(fd, "rb")


class Tail:
    """One file's complete lines as they are written, each cut at `max_line` bytes and decoded.

    A rotated file (or the copy copytruncate leaves) is read to its end before the new one, a truncated
    one from 0; the position is kept in `state()`, so a restart resumes where it stopped.
    """

    def __init__(self, path: Path, max_line: int):
        self.path = Path(path)
        self._max_line = max_line
        self._handle = None
        self._rotated = False
        self._siblings: set[int] | None = None  # inodes of the rotated copies seen at the last check
        self.backlog = 0
        self.reset()

    def reset(self) -> None:
        self.inode = None
        self.offset = 0
        self.fingerprint = b""
        self.skipping = False  # inside a line already cut: drop bytes up to its newline
        self.truncated = 0
        self.invalid_utf8 = 0

    def restore(self, saved: dict) -> None:
        """Resume from `state()`'s document; ValueError (or KeyError, TypeError) when it is not one."""
        inode = saved.get("inode")
        if inode is not None and not isinstance(inode, int):
            raise ValueError("inode is not a number")
        self.inode = inode
        self.offset = int(saved.get("offset", 0))
        self.fingerprint = bytes.fromhex(saved.get("fingerprint", ""))
        if self.offset < 0 or len(self.fingerprint) > self.offset:
            raise ValueError("offset and fingerprint do not agree")
        self.skipping = bool(saved.get("skipping", False))
        self.truncated = int(saved.get("truncated", 0))
        self.invalid_utf8 = int(saved.get("invalid_utf8", 0))
        if self.truncated < 0 or self.invalid_utf8 < 0:
            raise ValueError("a count is negative")

    def state(self) -> dict:
        return {"inode": self.inode, "offset": self.offset, "fingerprint": self.fingerprint.hex(),
                "skipping": self.skipping, "truncated": self.truncated, "invalid_utf8": self.invalid_utf8}

    # ---- following the file -------------------------------------------------------------------

    def check(self) -> bool:
        """Once per scrape: open the file, notice rotation and truncation; SourceError when unreadable."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            if self._handle is not None:
                self._rotated = True  # moved away and not yet recreated: read the old file to its end
            elif self.inode is None:
                raise SourceError("does not exist") from None
            return True
        except OSError as err:
            raise SourceError(err.strerror or str(err)) from None
        if not stat_module.S_ISREG(stat.st_mode):
            self.close()
            raise SourceError("is not a regular file")
        new_copies = self._new_siblings()
        if self._handle is None:
            self._open()
        elif stat.st_ino != self.inode:
            self._rotated = True
        elif found := self._copy_of_what_was_read(new_copies):
            self._read_copy_first(*found)
        elif not self._still_same_content(stat.st_size):
            log.info("%s was truncated; reading it from the start", self.path)
            self._restart()
        return True

    def _new_siblings(self) -> list[Path]:
        """Rotated copies of this file that appeared since the last check, the first check only noting them.

        copytruncate copies the file and empties it in place: same inode, and written past our offset
        again before the next scrape, a file of same-looking lines shows the same size and fingerprint.
        The copy, a new file holding what was read, is what tells."""
        found = {}
        try:
            with os.scandir(self.path.parent) as entries:
                for entry in entries:
                    suffix = entry.name[len(self.path.name):]
                    if (entry.name.startswith(self.path.name) and ROTATED_SUFFIX.fullmatch(suffix)
                            and entry.is_file(follow_symlinks=False)):
                        found[entry.inode()] = Path(entry.path)
        except OSError:
            return []
        known, self._siblings = self._siblings, set(found)
        if known is None:
            return []
        return [path for inode, path in found.items() if inode not in known and inode != self.inode]

    def _copy_of_what_was_read(self, copies: list[Path]):
        """The copy that holds this file's bytes up to the offset read, and a handle open on it; or None."""
        for copy in copies if self.fingerprint else ():
            try:
                handle = open_regular_file(copy)
            except (OSError, SourceError):  # gone, or not a plain file: not a copy
                continue
            if os.fstat(handle.fileno()).st_size >= self.offset:
                handle.seek(self.offset - len(self.fingerprint))
                if handle.read(len(self.fingerprint)) == self.fingerprint:
                    return copy, handle
            handle.close()
        return None

    def _read_copy_first(self, copy: Path, handle) -> None:
        """Read the lines written before the copy from the copy, to its end, then the file from its start."""
        log.info("%s was copied to %s and truncated; reading the copy to its end, then the file from the start",
                 self.path, copy.name)
        self._handle.close()
        self._handle = handle
        self.inode = os.fstat(handle.fileno()).st_ino
        self._rotated = True

    def _open(self) -> None:
        try:
            self._handle = open_regular_file(self.path)
        except FileNotFoundError:
            return
        except OSError as err:
            raise SourceError(err.strerror or str(err)) from None
        stat = os.fstat(self._handle.fileno())
        resuming = stat.st_ino == self.inode
        self.inode = stat.st_ino
        if not (resuming and self._still_same_content(stat.st_size)):
            self._restart()

    def _still_same_content(self, size: int) -> bool:
        if size < self.offset:
            return False
        self._handle.seek(self.offset - len(self.fingerprint))
        return self._handle.read(len(self.fingerprint)) == self.fingerprint

    def _restart(self) -> None:
        self.offset = 0
        self.fingerprint = b""
        self.skipping = False

    # ---- reading lines ------------------------------------------------------------------------

    def read_lines(self) -> list[str] | None:
        """The next chunk's complete lines (none when it held only the rest of a cut line); None when there
        is nothing more to read now."""
        if self._handle is None:
            return None
        try:
            data = self._read_chunk()
            if data is not None:
                return self._lines(data) if data else []
            if not self._rotated:
                return None
            self._rotated = False
            self._handle.close()
            self._handle = None
            self.check()  # the new file at the path, from its start
            return [] if self._handle is not None else None
        except OSError as err:
            self.close()
            raise SourceError(err.strerror or str(err)) from None

    def _read_chunk(self) -> bytes | None:
        """The bytes of the next complete lines, joined by newlines, the last without one; None at the end."""
        self._handle.seek(self.offset)
        chunk = self._handle.read(max(CHUNK_BYTES, 2 * self._max_line))
        if not chunk:
            return None
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for its newline...
        start = 0
        if self.skipping:
            newline = chunk.find(b"\n")
            if newline < 0:
                self._consumed(chunk, len(chunk))
                return b""
            self.skipping = False
            start = newline + 1
        if len(chunk) - end > self._max_line:  # ...unless it is already too long
            self.skipping = True
            self._consumed(chunk, len(chunk))
            return chunk[start:]
        if end == 0:
            return None
        self._consumed(chunk, end)
        return chunk[start:end - 1]

    def _consumed(self, chunk: bytes, length: int) -> None:
        self.offset += length
        self.fingerprint = (self.fingerprint + chunk[max(0, length - FINGERPRINT_BYTES):length])[-FINGERPRINT_BYTES:]

    def _lines(self, data: bytes) -> list[str]:
        """Lines joined by newlines, decoded; one longer than the limit is cut, one not UTF-8 read with
        replacement characters, and both are counted."""
        raw = data.split(b"\n")
        limit = self._max_line
        if max(map(len, raw)) > limit:
            lines = []
            for line in raw:
                if len(line) > limit:
                    self.truncated += 1
                    lines.append(line[:limit].decode("utf-8", "replace"))
                else:
                    lines.append(self._decode(line))
            return lines
        try:
            return data.decode("utf-8").split("\n")
        except UnicodeDecodeError:
            return [self._decode(line) for line in raw]

    def _decode(self, line: bytes) -> str:
        try:
            return line.decode("utf-8")
        except UnicodeDecodeError:
            self.invalid_utf8 += 1
            return line.decode("utf-8", "replace")

    def measure_backlog(self) -> None:
        try:
            self.backlog = max(0, os.fstat(self._handle.fileno()).st_size - self.offset) if self._handle else 0
        except OSError:
            self.backlog = 0

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self._rotated = False
