"""The unit tier stays fast and self-contained: a test here that starts a process or touches the network
fails, naming what it did (such a test belongs in tests/integration)."""

from __future__ import annotations

import socket
import sys
import threading

import pytest

# Audit events (docs.python.org/3/library/audit_events.html) of starting a program.
PROCESS_EVENTS = {"subprocess.Popen", "os.system", "os.posix_spawn", "os.exec", "os.fork", "os.spawn"}
NETWORK_EVENTS = {"socket.connect", "socket.bind"}
NETWORK_FAMILIES = {socket.AF_INET, socket.AF_INET6}

# What the running unit test did so far; None outside a unit test (the hook stays for the whole session).
_seen: list[str] | None = None
# Threads that were running before the test began: what an earlier test left behind is not this test's doing.
_earlier: set[int] = set()


def _audit(event: str, args: tuple) -> None:
    if _seen is None or threading.get_ident() in _earlier:
        return
    if event in PROCESS_EVENTS:
        _seen.append(f"{event} {args[:2]!r}")
    elif event in NETWORK_EVENTS and getattr(args[0], "family", None) in NETWORK_FAMILIES:
        _seen.append(f"{event} {args[1]!r}")


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def no_process_and_no_network():
    global _seen, _earlier
    _earlier = {thread.ident for thread in threading.enumerate()} - {threading.get_ident()}
    _seen = []
    try:
        yield
    finally:
        seen, _seen = _seen, None
    if seen:
        pytest.fail("a unit test started a process or used the network (move it to tests/integration): "
                    + "; ".join(seen), pytrace=False)
