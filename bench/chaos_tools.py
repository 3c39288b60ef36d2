"""The chaos suite's tools: child processes killed as a group, a small tmpfs, and a faulty S3 front on loopback."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import struct
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Iterator


class Children:
    """Every process the suite starts. Each gets a session of its own, so that a kill -9 of its group
    also reaches what it started (Litestream under `opsmon-backup serve`), and close() ends them all."""

    def __init__(self, env: dict, cwd: Path):
        self.env = env
        self.cwd = cwd
        self._running: list[subprocess.Popen] = []

    def start(self, args: list[str], log: Path | None = None) -> subprocess.Popen:
        out = open(log, "ab") if log else subprocess.DEVNULL
        try:
            process = subprocess.Popen(args, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                       stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
                                       start_new_session=True)
        finally:
            if log:
                out.close()
        self._running.append(process)
        return process

    def run(self, args: list[str], timeout: float = 180, stdin: str | None = None) -> subprocess.CompletedProcess:
        """Run to the end (or kill the group at `timeout`, returncode -9 and a note in stderr)."""
        process = subprocess.Popen(args, cwd=self.cwd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL, text=True,
                                   errors="replace", start_new_session=True)
        self._running.append(process)
        try:
            out, err = process.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(process)
            out, err = process.communicate()
            err += f"\n[chaos] killed after the {timeout:.0f}s limit"
        finally:
            self._forget(process)
        return subprocess.CompletedProcess(args, process.returncode, out, err)

    def kill(self, process: subprocess.Popen) -> bool:
        """kill -9 the process and its group; True when it was still running."""
        alive = process.poll() is None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(10)
        self._forget(process)
        return alive

    def stop(self, process: subprocess.Popen, timeout: float = 15) -> None:
        """SIGTERM to the process alone (it stops its own children), then kill -9 of the group."""
        if process.poll() is None:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout)
        self.kill(process)

    def _forget(self, process: subprocess.Popen) -> None:
        if process.poll() is not None and process in self._running:
            self._running.remove(process)

    def close(self) -> None:
        for process in list(self._running):
            self.kill(process)
            # A group outlives its leader: kill what is left of it too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        self._running.clear()


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "5m") -> Iterator[Path]:
    """A small tmpfs mounted at `path` while the block runs; always unmounted (lazily if still busy)."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        raise OSError(f"cannot mount a tmpfs at {path}: {mounted.stderr.strip() or mounted.returncode}")
    try:
        yield path
    finally:
        for _ in range(20):
            if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
                break
            time.sleep(0.25)
        else:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


# ---- S3 behind a faulty front ------------------------------------------------------------------

S3_ERRORS = {
    "503 SlowDown": (b"503 Slow Down", b"SlowDown", b"Please reduce your request rate."),
    "500 InternalError": (b"500 Internal Server Error", b"InternalError",
                          b"We encountered an internal error. Please try again."),
}
DROPS = ("dropped before the body", "dropped mid-upload", "dropped mid-answer")
FAULTS = (*S3_ERRORS, *DROPS)
HEAD_LIMIT = 64 * 1024


class FaultProxy:
    """An HTTP front on 127.0.0.1 before an S3 server, one request per connection, that answers S3
    errors or drops connections (before the body, mid-upload, mid-answer) at `rate`, as a flaky
    provider or network would. `counts` says what it did."""

    def __init__(self, upstream_port: int, rng: random.Random, rate: float = 0.0):
        self.upstream = ("127.0.0.1", upstream_port)
        self.rate = rate
        self.counts: Counter[str] = Counter()
        self._rng = rng
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.5)
        self.port = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def injected(self) -> int:
        return sum(n for kind, n in self.counts.items() if kind in FAULTS)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), name="fault-proxy-conn", daemon=True).start()

    def _decide(self) -> str:
        with self._lock:
            kind = self._rng.choice(FAULTS) if self._rng.random() < self.rate else "passed"
            self.counts[kind] += 1
            return kind

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(20)
        try:
            with client:
                self._handle(client)
        except (OSError, ValueError):
            pass  # a client that went away, or a request we could not read: its connection ends here

    def _handle(self, client: socket.socket) -> None:
        head, rest = _read_head(client)
        if not head:
            return
        lines = head.split(b"\r\n")
        headers = [line for line in lines[1:] if line]
        names = {line.split(b":", 1)[0].strip().lower(): line.split(b":", 1)[1].strip() for line in headers}
        expect = names.get(b"expect", b"").lower() == b"100-continue"
        kind = self._decide()
        if kind in S3_ERRORS:
            if not expect:
                for _ in _body(client, names, rest):
                    pass
            status, code, message = S3_ERRORS[kind]
            xml = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>' + code + b"</Code><Message>" + message
                   + b"</Message><RequestId>chaos</RequestId></Error>")
            client.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/xml\r\nContent-Length: "
                           + str(len(xml)).encode() + b"\r\nConnection: close\r\n\r\n" + xml)
            return
        if expect:
            client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if kind == "dropped before the body":
            _reset(client)
            return
        kept = [line for line in headers
                if line.split(b":", 1)[0].strip().lower() not in (b"connection", b"expect", b"keep-alive")]
        upstream = socket.create_connection(self.upstream, timeout=20)
        with upstream:
            upstream.sendall(b"\r\n".join([lines[0], *kept, b"Connection: close", b"", b""]))
            cut_at = self._rng.randint(0, 256 * 1024) if kind == "dropped mid-upload" else None
            sent = 0
            for chunk in _body(client, names, rest):
                if cut_at is not None and sent + len(chunk) > cut_at:
                    upstream.sendall(chunk[:max(0, cut_at - sent)])
                    _reset(client)  # the upload stops here; the server never gets the rest
                    return
                upstream.sendall(chunk)
                sent += len(chunk)
            if cut_at is not None:  # a body shorter than the cut: drop before the answer instead
                _reset(client)
                return
            answer, body = _read_head(upstream)
            answer_lines = [line for line in answer.split(b"\r\n") if line]
            answer_lines = [answer_lines[0], *(line for line in answer_lines[1:]
                                               if not line.lower().startswith(b"connection:")), b"Connection: close"]
            out = b"\r\n".join([*answer_lines, b"", b""]) + body
            limit = self._rng.randint(0, 4096) if kind == "dropped mid-answer" else None
            while True:
                if limit is not None and len(out) >= limit:
                    client.sendall(out[:limit])
                    _reset(client)
                    return
                client.sendall(out)
                if limit is not None:
                    limit -= len(out)
                out = upstream.recv(65536)
                if not out:
                    return


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """The bytes up to the blank line after the headers, and whatever came after them."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return b"", b""
        data += chunk
        if len(data) > HEAD_LIMIT:
            raise ValueError("head too long")
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _body(sock: socket.socket, headers: dict, rest: bytes) -> Iterator[bytes]:
    """The request body as it arrives, raw (chunked bodies with their framing), by Content-Length or chunks."""
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        buffer = rest
        while True:
            while b"\r\n" not in buffer:
                buffer += _recv(sock)
            size_line, _, buffer = buffer.partition(b"\r\n")
            yield size_line + b"\r\n"
            size = int(size_line.split(b";")[0], 16)
            if size == 0:  # trailers, up to a blank line
                while not (buffer.startswith(b"\r\n") or b"\r\n\r\n" in buffer):
                    buffer += _recv(sock)
                end = 2 if buffer.startswith(b"\r\n") else buffer.index(b"\r\n\r\n") + 4
                yield buffer[:end]
                return
            while len(buffer) < size + 2:
                buffer += _recv(sock)
            yield buffer[:size + 2]
            buffer = buffer[size + 2:]
    remaining = int(headers.get(b"content-length", b"0") or 0)
    if rest:
        yield rest[:remaining]
        remaining -= len(rest[:remaining])
    while remaining > 0:
        chunk = sock.recv(min(remaining, 65536))
        if not chunk:
            raise ValueError("body cut short by the client")
        remaining -= len(chunk)
        yield chunk


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise ValueError("body cut short by the client")
    return chunk


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset, as a dropped connection looks to the other side."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
