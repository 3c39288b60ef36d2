"""The unit tier's guard (tests/unit/conftest.py) fails a test that starts a process or uses the network,
naming what it did, and lets a test that does neither pass."""

from __future__ import annotations

from tests.conftest import REPO

UNIT_TESTS = '''
import socket
import subprocess
import sys


def test_pure():
    assert sorted([2, 1]) == [1, 2]


def test_starts_a_process():
    subprocess.run([sys.executable, "-c", "pass"], check=True)


def test_connects_to_loopback():
    with socket.socket() as sock:
        sock.settimeout(1)
        sock.connect_ex(("127.0.0.1", 9))
'''


def test_the_unit_guard_fails_a_process_and_a_connection_and_passes_the_rest(pytester):
    pytester.makeconftest((REPO / "tests/unit/conftest.py").read_text())
    pytester.makepyfile(test_tier=UNIT_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_starts_a_process*",
                                 "*started a process or used the network*subprocess.Popen*",
                                 "*ERROR at teardown of test_connects_to_loopback*",
                                 "*started a process or used the network*socket.connect*127.0.0.1*9*"])
