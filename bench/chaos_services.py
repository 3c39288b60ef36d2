"""Loopback stand-ins for probe faults (the chaos suite, the scrape tests): healthy, silent, trickling, flapping."""

from __future__ import annotations

import contextlib
import socket
import threading

from bench.harness import LoopbackServer, QuietHandler


class _Handler(QuietHandler):
    def do_GET(self):
        service = self.server.service
        if service.hanging.is_set():
            service.released.wait(60)  # hung until the fault goes away, then answers late
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\n")


class HttpService:
    """Answers 200 at once; while `hanging` is set it accepts and answers nothing (the flapping fault)."""

    def __init__(self):
        self.hanging = threading.Event()
        self.released = threading.Event()
        self._server = LoopbackServer(_Handler)
        self._server.server.service = self  # where the handler reads the fault from
        self.url = f"{self._server.url}/"

    def hang(self, hanging: bool) -> None:
        if hanging:
            self.released.clear()
            self.hanging.set()
        else:
            self.hanging.clear()
            self.released.set()

    def close(self) -> None:
        self.hang(False)
        self._server.close()


class TcpService:
    """Accepts and never answers, or (`trickle`) sends a byte to each connection every tenth of a second
    and never finishes: no read timeout fires on it."""

    def __init__(self, trickle: bool):
        self._trickle = trickle
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(256)
        self._server.settimeout(0.1)
        self._accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}/"
        self._thread = threading.Thread(target=self._serve, name="chaos-tcp", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self._accepted.append(self._server.accept()[0])
            for connection in self._accepted if self._trickle else ():
                with contextlib.suppress(OSError):
                    connection.send(b"H")

    def hang(self, hanging: bool) -> None:
        pass  # always hung

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for connection in self._accepted:
            connection.close()
        self._server.close()


def hung_service(kind: str):
    """A service showing the fault `kind`: silent, trickling or flapping (hung every other scrape)."""
    return {"silent": lambda: TcpService(trickle=False), "trickling": lambda: TcpService(trickle=True),
            "flapping": HttpService}[kind]()
