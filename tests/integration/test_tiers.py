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


LEFT_RUNNING = '''
import socket
import threading

started = threading.Event()
go = threading.Event()


def connect():
    with socket.socket() as sock:
        sock.settimeout(1)
        sock.connect_ex(("127.0.0.1", 9))


def connect_later():
    started.set()
    go.wait(10)
    connect()


def test_an_earlier_test_leaves_a_thread_running():
    threading.Thread(target=connect_later, daemon=True).start()
    started.wait(10)


def test_a_pure_test_is_not_blamed_for_it():
    go.set()
    for thread in threading.enumerate():
        if thread.name != "MainThread":
            thread.join(10)


def test_a_thread_of_the_test_s_own_is_its_doing():
    thread = threading.Thread(target=connect)
    thread.start()
    thread.join(10)
'''


def test_the_unit_guard_blames_a_test_only_for_what_its_own_threads_did(pytester):
    pytester.makeconftest((REPO / "tests/unit/conftest.py").read_text())
    pytester.makepyfile(test_threads=LEFT_RUNNING)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_a_thread_of_the_test_s_own_is_its_doing*"])
