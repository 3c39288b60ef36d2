"""Benchmarks: scripts that measure and print ratios, never assertions in tests."""
