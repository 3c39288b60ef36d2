"""Streaming gzip (python-isal: standard .gz, several times faster than zlib) with sha256 of both sides."""

from __future__ import annotations

import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from isal import igzip, isal_zlib

CHUNK = 1 << 20


class CorruptGzip(Exception):
    """A damaged or truncated stream; `packed` is the digest of the whole file all the same."""

    def __init__(self, message: str, packed: "Digest"):
        super().__init__(message)
        self.packed = packed


@dataclass(frozen=True)
class Digest:
    sha256: str
    size_bytes: int


class _Hashed:
    """A file wrapper that hashes every byte that passes through it, either way."""

    def __init__(self, file: BinaryIO):
        self._file = file
        self.hash = hashlib.sha256()
        self.size = 0

    def _seen(self, data):
        self.hash.update(data)
        self.size += len(data)
        return data

    def write(self, data) -> int:
        return self._file.write(self._seen(data))

    def read(self, size: int = -1) -> bytes:
        return self._seen(self._file.read(size))

    def readinto(self, buffer) -> int:
        count = self._file.readinto(buffer)
        self._seen(memoryview(buffer)[:count])
        return count

    def flush(self) -> None:
        self._file.flush()

    def digest(self) -> Digest:
        return Digest(self.hash.hexdigest(), self.size)


def compress(source: Path, target: Path, level: int, progress: Callable[[int], None] = lambda n: None
             ) -> tuple[Digest, Digest]:
    """gzip `source` into `target`, fsynced; returns the digests of the raw and the compressed bytes."""
    raw = hashlib.sha256()
    raw_size = 0
    with open(source, "rb") as src, open(target, "wb") as out:
        packed = _Hashed(out)
        # mtime 0: the same database always gives the same bytes.
        with igzip.GzipFile(fileobj=packed, mode="wb", compresslevel=level, mtime=0) as gz:
            while chunk := src.read(CHUNK):
                raw.update(chunk)
                raw_size += len(chunk)
                gz.write(chunk)
                progress(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    return Digest(raw.hexdigest(), raw_size), packed.digest()


def decompress(source: Path, target: Path | None = None, progress: Callable[[int], None] = lambda n: None
               ) -> tuple[Digest, Digest]:
    """Read the whole gzip stream, writing it to `target` when given; digests of raw and compressed bytes.

    Raises CorruptGzip for a damaged or truncated stream.
    """
    raw = hashlib.sha256()
    raw_size = 0
    with open(source, "rb") as src:
        packed = _Hashed(src)
        out = open(target, "wb") if target else None
        try:
            with igzip.GzipFile(fileobj=packed, mode="rb") as gz:
                while chunk := _read(gz):
                    raw.update(chunk)
                    raw_size += len(chunk)
                    if out:
                        out.write(chunk)  # a failed write (a full disk) is no damage of the backup: it is raised
                    progress(len(chunk))
            error = None
        except _Damaged as damaged:
            error = damaged.__cause__
        finally:
            if out:
                out.close()
        while packed.read(CHUNK):  # hash to the end of the file, whatever the stream left over
            pass
    if error is not None:
        raise CorruptGzip(f"gzip stream is damaged: {error}", packed.digest())
    return Digest(raw.hexdigest(), raw_size), packed.digest()


class _Damaged(Exception):
    pass


def _read(gz) -> bytes:
    """The next chunk of the stream; _Damaged when the stream itself is broken."""
    try:
        return gz.read(CHUNK)
    except (OSError, EOFError, zlib.error, isal_zlib.error) as err:
        raise _Damaged() from err


def file_digest(path: Path) -> Digest:
    hashing = hashlib.sha256()
    size = 0
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            hashing.update(chunk)
            size += len(chunk)
    return Digest(hashing.hexdigest(), size)
