"""Benchmarks: scripts that measure and print ratios, never assertions in tests; harness.py and fleet.py are
the parts the tests share."""
