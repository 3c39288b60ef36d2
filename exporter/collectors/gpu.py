"""NVIDIA GPUs through NVML, e.g. `opsmon_gpu_utilization_ratio{gpu="0"} 0.42`; no GPU or driver publishes nothing."""

from __future__ import annotations

import logging

from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)


def _load_nvml():
    import pynvml  # nvidia-ml-py; imported late so a machine without it still starts

    return pynvml


class GpuCollector:
    name = "gpu"

    def __init__(self, nvml=None):
        self._nvml = nvml or _load_nvml()
        self._initialised = False

    def describe(self):
        return []

    def _ready(self) -> bool:
        """Initialise NVML once; a missing driver or library means no GPU here, which is not an error."""
        if not self._initialised:
            try:
                self._nvml.nvmlInit()
            except self._nvml.NVMLError as err:
                log.debug("no NVIDIA GPU usable here: %s", err)
                return False
            self._initialised = True
        return True

    def collect(self):
        if not self._ready():
            return
        nvml = self._nvml
        labels = ["gpu"]
        families = {
            "info": GaugeMetricFamily("opsmon_gpu_info", "GPU identity; always 1.", labels=["gpu", "uuid", "name"]),
            "util": GaugeMetricFamily("opsmon_gpu_utilization_ratio",
                                      "Share of the last sample period a kernel ran.", labels=labels),
            "used": GaugeMetricFamily("opsmon_gpu_memory_used_bytes", "GPU memory in use.", labels=labels),
            "total": GaugeMetricFamily("opsmon_gpu_memory_total_bytes", "GPU memory.", labels=labels),
            "temp": GaugeMetricFamily("opsmon_gpu_temperature_celsius", "GPU core temperature.", labels=labels),
            "power": GaugeMetricFamily("opsmon_gpu_power_watts", "GPU power draw.", labels=labels),
            "enc": GaugeMetricFamily("opsmon_gpu_encoder_utilization_ratio", "Video encoder utilisation.",
                                     labels=labels),
            "dec": GaugeMetricFamily("opsmon_gpu_decoder_utilization_ratio", "Video decoder utilisation.",
                                     labels=labels),
        }
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            gpu = str(index)
            families["info"].add_metric([gpu, _text(nvml.nvmlDeviceGetUUID(handle)),
                                         _text(nvml.nvmlDeviceGetName(handle))], 1)
            for key, value in self._readings(handle).items():
                if value is not None:
                    families[key].add_metric([gpu], value)
        yield from families.values()


    def _supported(self, read, *args):
        """A reading, or None where the board answers NotSupported (older boards: power, encoder)."""
        try:
            return read(*args)
        except self._nvml.NVMLError_NotSupported:
            return None

    def _readings(self, handle) -> dict:
        nvml = self._nvml
        utilization = self._supported(nvml.nvmlDeviceGetUtilizationRates, handle)
        memory = self._supported(nvml.nvmlDeviceGetMemoryInfo, handle)
        power = self._supported(nvml.nvmlDeviceGetPowerUsage, handle)
        encoder = self._supported(nvml.nvmlDeviceGetEncoderUtilization, handle)
        decoder = self._supported(nvml.nvmlDeviceGetDecoderUtilization, handle)
        return {
            "util": utilization.gpu / 100.0 if utilization else None,
            "used": memory.used if memory else None,
            "total": memory.total if memory else None,
            "temp": self._supported(nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU),
            "power": power / 1000.0 if power is not None else None,  # milliwatts
            "enc": encoder[0] / 100.0 if encoder else None,
            "dec": decoder[0] / 100.0 if decoder else None,
        }


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def build(config):
    return GpuCollector()
