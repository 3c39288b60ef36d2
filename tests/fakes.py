"""Stand-ins for what cannot be pinned on a real machine (psutil's readings, NVML without a GPU, clocks)."""

from __future__ import annotations

from collections import namedtuple
from types import SimpleNamespace

CpuTimes = namedtuple("CpuTimes", "user nice system idle iowait irq softirq steal")
Memory = namedtuple("Memory", "total available")
Swap = namedtuple("Swap", "total used")
Partition = namedtuple("Partition", "device mountpoint fstype opts")
Statvfs = namedtuple("Statvfs", "f_blocks f_bavail f_frsize f_files f_ffree")
DiskIO = namedtuple("DiskIO", "read_bytes write_bytes busy_time")
NetIO = namedtuple("NetIO", "bytes_recv bytes_sent")


def fake_psutil(available=6 * 2**30, load=(0.5, 0.75, 1.0)):
    """A psutil with the readings of a small, fixed machine."""
    return SimpleNamespace(
        cpu_times=lambda: CpuTimes(100.0, 1.0, 20.0, 1000.0, 5.0, 0.5, 0.25, 0.0),
        cpu_count=lambda: 4,
        getloadavg=lambda: load,
        virtual_memory=lambda: Memory(8 * 2**30, available),
        swap_memory=lambda: Swap(2**30, 2**20),
        disk_partitions=lambda all=False: [
            Partition("/dev/sda1", "/", "ext4", "rw"),
            Partition("/dev/sda2", "/data", "xfs", "rw"),
            Partition("overlay", "/var/lib/docker/x", "overlay", "rw"),
            Partition("/dev/sda1", "/", "ext4", "rw"),  # bind mounts list a mountpoint twice
        ],
        disk_io_counters=lambda perdisk=True: {"sda": DiskIO(4096, 8192, 1500)},
        net_io_counters=lambda pernic=True: {"eth0": NetIO(1000, 2000), "lo": NetIO(50, 50)},
        boot_time=lambda: 1_700_000_000.0,
    )


def fake_statvfs(path):
    return {"/": Statvfs(1000, 400, 4096, 500, 300), "/data": Statvfs(2000, 100, 4096, 1000, 10)}[path]


class FakeClock:
    """A clock that moves only when told."""

    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeProcess:
    def __init__(self, pid, name, cmdline, cpu=(1.5, 0.5), rss=50 * 2**20, fds=12, created=1_700_000_100.0):
        self.pid = pid
        self.info = {"name": name, "cmdline": cmdline}
        self._cpu, self._rss, self._fds, self._created = cpu, rss, fds, created

    def oneshot(self):
        from contextlib import nullcontext

        return nullcontext()

    def cpu_times(self):
        return SimpleNamespace(user=self._cpu[0], system=self._cpu[1])

    def memory_info(self):
        return SimpleNamespace(rss=self._rss)

    def num_fds(self):
        return self._fds

    def create_time(self):
        return self._created


def fake_process_table(processes: list[FakeProcess]):
    """A psutil that knows only these processes."""
    by_pid = {p.pid: p for p in processes}
    return SimpleNamespace(pid_exists=lambda pid: pid in by_pid, Process=lambda pid: by_pid[pid],
                           process_iter=lambda attrs=None: list(processes))


class FakeResponse:
    def __init__(self, status_code: int, text: str = ""):
        self.status_code = status_code
        self.text = text


class FakeSession:
    """A requests.Session whose answers are given per URL; an exception instance is raised instead."""

    def __init__(self, answers: dict, clock: FakeClock | None = None, seconds: float = 0.25):
        self._answers = answers
        self._clock = clock
        self._seconds = seconds

    def request(self, method, url, timeout=None, allow_redirects=True):
        if self._clock is not None:
            self._clock.advance(self._seconds)
        answer = self._answers[url]
        if isinstance(answer, Exception):
            raise answer
        return answer


class FakeNvml:
    """NVML as nvidia-ml-py exposes it, for one GPU that has no encoder readings. CI has no GPU."""

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):  # noqa: N801 - NVML's own name
        pass

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, present: bool = True):
        self.present = present

    def nvmlInit(self):  # noqa: N802
        if not self.present:
            raise self.NVMLError("NVML Shared Library Not Found")

    def nvmlDeviceGetCount(self):  # noqa: N802
        return 1

    def nvmlDeviceGetHandleByIndex(self, index):  # noqa: N802
        return f"handle-{index}"

    def nvmlDeviceGetUUID(self, handle):  # noqa: N802
        return "GPU-0f1e2d3c"

    def nvmlDeviceGetName(self, handle):  # noqa: N802
        return b"NVIDIA Test Card"

    def nvmlDeviceGetUtilizationRates(self, handle):  # noqa: N802
        return SimpleNamespace(gpu=42, memory=10)

    def nvmlDeviceGetMemoryInfo(self, handle):  # noqa: N802
        return SimpleNamespace(used=2 * 2**30, total=16 * 2**30, free=14 * 2**30)

    def nvmlDeviceGetTemperature(self, handle, sensor):  # noqa: N802
        return 61

    def nvmlDeviceGetPowerUsage(self, handle):  # noqa: N802
        return 123_456  # milliwatts

    def nvmlDeviceGetEncoderUtilization(self, handle):  # noqa: N802
        raise self.NVMLError_NotSupported()

    def nvmlDeviceGetDecoderUtilization(self, handle):  # noqa: N802
        return (15, 167000)
