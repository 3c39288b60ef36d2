"""System metrics from psutil, e.g. `opsmon_memory_available_bytes 1.2e+10`."""

from __future__ import annotations

import os
import time

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

# Pseudo and container-internal filesystems say nothing about space an operator can run out of.
IGNORED_FSTYPES = {"autofs", "binfmt_misc", "cgroup", "cgroup2", "configfs", "debugfs", "devpts", "devtmpfs",
                   "fusectl", "hugetlbfs", "mqueue", "nsfs", "overlay", "proc", "pstore", "securityfs",
                   "squashfs", "sysfs", "tracefs"}


class SystemCollector:
    name = "system"

    def __init__(self, ps=psutil, statvfs=os.statvfs, clock=time.time):
        self._ps = ps
        self._statvfs = statvfs
        self._clock = clock

    def describe(self):
        return []

    def collect(self):
        yield from self._cpu()
        yield from self._memory()
        yield from self._filesystems()
        yield from self._disks()
        yield from self._network()
        yield GaugeMetricFamily("opsmon_boot_time_seconds", "System boot time, in Unix seconds.",
                                value=self._ps.boot_time())
        # Prometheus compares this with the scrape's own time: the host's clock skew (node_time_seconds).
        yield GaugeMetricFamily("opsmon_time_seconds", "The host's clock, in Unix seconds.", value=self._clock())

    def _cpu(self):
        seconds = CounterMetricFamily("opsmon_cpu_seconds", "CPU time spent in each mode, all cores together.",
                                      labels=["mode"])
        for mode, value in sorted(self._ps.cpu_times()._asdict().items()):
            seconds.add_metric([mode], value)
        yield seconds
        yield GaugeMetricFamily("opsmon_cpus", "Logical CPUs.", value=self._ps.cpu_count())
        for window, load in zip((1, 5, 15), self._ps.getloadavg()):
            yield GaugeMetricFamily(f"opsmon_load{window}", f"Load average over {window} minute(s).", value=load)

    def _memory(self):
        memory = self._ps.virtual_memory()
        swap = self._ps.swap_memory()
        yield GaugeMetricFamily("opsmon_memory_total_bytes", "Physical memory.", value=memory.total)
        yield GaugeMetricFamily("opsmon_memory_available_bytes",
                                "Memory available to new work without swapping.", value=memory.available)
        yield GaugeMetricFamily("opsmon_swap_total_bytes", "Swap space.", value=swap.total)
        yield GaugeMetricFamily("opsmon_swap_used_bytes", "Swap space in use.", value=swap.used)

    def _filesystems(self):
        labels = ["mountpoint", "fstype"]
        size = GaugeMetricFamily("opsmon_filesystem_size_bytes", "Filesystem size.", labels=labels)
        avail = GaugeMetricFamily("opsmon_filesystem_avail_bytes",
                                  "Filesystem space available to unprivileged users.", labels=labels)
        files = GaugeMetricFamily("opsmon_filesystem_files", "Filesystem inodes.", labels=labels)
        files_free = GaugeMetricFamily("opsmon_filesystem_files_free", "Free filesystem inodes.", labels=labels)
        seen = set()
        for part in sorted(self._ps.disk_partitions(all=False), key=lambda p: p.mountpoint):
            if part.fstype in IGNORED_FSTYPES or part.mountpoint in seen:
                continue
            seen.add(part.mountpoint)
            try:
                stat = self._statvfs(part.mountpoint)
            except OSError:
                continue  # unmounted between listing and stat, or not ours to read
            values = [part.mountpoint, part.fstype]
            size.add_metric(values, stat.f_blocks * stat.f_frsize)
            avail.add_metric(values, stat.f_bavail * stat.f_frsize)
            files.add_metric(values, stat.f_files)
            files_free.add_metric(values, stat.f_ffree)
        yield from (size, avail, files, files_free)

    def _disks(self):
        read = CounterMetricFamily("opsmon_disk_read_bytes", "Bytes read from the device.", labels=["device"])
        written = CounterMetricFamily("opsmon_disk_written_bytes", "Bytes written to the device.", labels=["device"])
        busy = CounterMetricFamily("opsmon_disk_io_time_seconds", "Time the device spent doing I/O.",
                                   labels=["device"])
        for device, io in sorted((self._ps.disk_io_counters(perdisk=True) or {}).items()):
            read.add_metric([device], io.read_bytes)
            written.add_metric([device], io.write_bytes)
            busy.add_metric([device], getattr(io, "busy_time", 0) / 1000.0)
        yield from (read, written, busy)

    def _network(self):
        received = CounterMetricFamily("opsmon_network_receive_bytes", "Bytes received.", labels=["interface"])
        sent = CounterMetricFamily("opsmon_network_transmit_bytes", "Bytes sent.", labels=["interface"])
        for interface, io in sorted((self._ps.net_io_counters(pernic=True) or {}).items()):
            received.add_metric([interface], io.bytes_recv)
            sent.add_metric([interface], io.bytes_sent)
        yield from (received, sent)


def build(config):
    return SystemCollector()
