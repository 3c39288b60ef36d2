"""System: is the machine healthy, and which resource runs out first?"""

from grafana_foundation_sdk.builders import dashboard

from grafana.boards import panels as p
from grafana.boards import rules

UID = "opsmon-system"
FILE = "system"
I = p.on_hosts('instance=~"$instance"')
MODES_BUT_IDLE = p.on_hosts('instance=~"$instance"', 'mode!="idle"')


def _both(alert: str) -> list[rules.Limit]:
    return [rules.limit(alert, severity) for severity in ("warning", "critical")]


def build() -> dashboard.Dashboard:
    cpu = rules.limit("OpsmonCpuHigh")
    memory = p.above(*_both("OpsmonMemoryLow"), scale=-1)  # alerts on what is available; panels show what is used
    disk = p.above(*_both("OpsmonDiskSpaceLow"), scale=-1)
    inodes = p.above(*_both("OpsmonInodesLow"), scale=-1)
    swap = p.above(rules.limit("OpsmonSwapHigh"))
    swap_used = f"opsmon_swap_used_bytes{I} / clamp_min(opsmon_swap_total_bytes{I}, 1)"  # 0, not NaN, with no swap
    return p.board(
        UID, "opsmon / System",
        "Is the machine healthy, and which resource runs out first? CPU, memory, disks, network, GPUs, processes.",
        [
            p.Row(4, [
                (p.stat("CPU busy", "Share of all CPUs busy over the last minute, on the busiest host; orange "
                        "where OpsmonCpuHigh fires when it lasts.",
                        f"max(instance:opsmon_cpu_utilisation:ratio_rate1m{I})", p.RATIO, p.above(cpu),
                        sparkline=True), 4),
                (p.stat("Memory in use", "Share of memory not available to new work, on the fullest host; "
                        "orange and red where OpsmonMemoryLow warns and pages.",
                        f"max(instance:opsmon_memory_utilisation:ratio{I})", p.RATIO, memory, sparkline=True), 4),
                (p.stat("Fullest filesystem", "Share of the fullest filesystem in use; orange and red where "
                        "OpsmonDiskSpaceLow warns and pages.",
                        f"max(mountpoint:opsmon_filesystem_utilisation:ratio{I})", p.RATIO, disk), 4),
                (p.stat("Swap in use", "Share of swap space in use (0 with no swap); orange where OpsmonSwapHigh "
                        "fires.", f"max({swap_used})", p.RATIO, swap), 4),
                (p.stat("Processes down", "Watched processes not running now (OpsmonProcessDown).",
                        f"count(opsmon_process_up{I} == 0) or vector(0)", p.COUNT,
                        p.any_is_bad(rules.limit("OpsmonProcessDown"))), 4),
                (p.stat("Up for", "Time since the machine booted, on the most recently booted host.",
                        f"time() - max(opsmon_boot_time_seconds{I})", p.SECONDS, p.neutral()), 4),
            ]),
            p.Row(8, [
                (p.graph("CPU utilisation", "Share of all CPUs busy (not idle, not waiting for I/O), per "
                         "host; the dashed line is where OpsmonCpuHigh fires.",
                         [p.query(f"instance:opsmon_cpu_utilisation:ratio_rate1m{I}", "{{host}}")], p.RATIO,
                         thresholds=p.above(cpu), minimum=0, maximum=1), 8),
                (p.graph("CPU by mode", "Where the CPUs' time goes, as a share of all CPUs of the selected hosts "
                         "together (idle left out): user, system, iowait, ... Pick one host to see one machine.",
                         [p.query(f'sum by (mode) (rate(opsmon_cpu_seconds_total{MODES_BUT_IDLE}[$__rate_interval]))'
                                  f" / scalar(sum(opsmon_cpus{I}))", "{{mode}}")],
                         p.RATIO, stack=True, minimum=0, maximum=1), 8),
                (p.graph("Load per core", "Runnable processes per CPU averaged over 1, 5 and 15 minutes: "
                         "above 1, work waits for a CPU.",
                         [p.query(f"opsmon_load{minutes}{I} / on (host, instance) opsmon_cpus{I}",
                                  f"{{{{host}}}} {minutes} min")
                          for minutes in (1, 5, 15)], p.COUNT,
                         minimum=0), 8),
            ]),
            p.Row(8, [
                (p.graph("Memory used", "Share of memory not available to new work; dashed where OpsmonMemoryLow "
                         "warns and pages.",
                         [p.query(f"instance:opsmon_memory_utilisation:ratio{I}", "{{host}}")], p.RATIO,
                         thresholds=memory, minimum=0, maximum=1), 8),
                (p.graph("Swap used", "Share of swap space in use; dashed where OpsmonSwapHigh fires.",
                         [p.query(swap_used, "{{host}}")], p.RATIO, thresholds=swap, minimum=0, maximum=1), 8),
                (p.graph("Filesystem used", "Share of each filesystem in use; dashed where OpsmonDiskSpaceLow "
                         "warns and pages.",
                         [p.query(f"mountpoint:opsmon_filesystem_utilisation:ratio{I}", "{{host}} {{mountpoint}}")],
                         p.RATIO, thresholds=disk, minimum=0, maximum=1), 8),
            ]),
            p.Row(8, [
                (p.graph("Inodes used", "Share of each filesystem's inodes in use (none on filesystems without "
                         "a fixed count); dashed where OpsmonInodesLow warns and pages.",
                         [p.query(f"1 - opsmon_filesystem_files_free{I} / opsmon_filesystem_files{I}",
                                  "{{host}} {{mountpoint}}")], p.RATIO, thresholds=inodes, minimum=0, maximum=1), 8),
                (p.graph("Disk throughput", "Bytes read (up) and written (down) per second, per device.",
                         [p.query(f"sum by (host, device) (rate(opsmon_disk_read_bytes_total{I}[$__rate_interval]))",
                                  "{{host}} {{device}} read"),
                          p.query(f"-sum by (host, device) "
                                  f"(rate(opsmon_disk_written_bytes_total{I}[$__rate_interval]))",
                                  "{{host}} {{device}} written")], p.BYTES_PER_SECOND), 8),
                (p.graph("Disk busy", "Share of time each device had I/O in flight.",
                         [p.query(f"rate(opsmon_disk_io_time_seconds_total{I}[$__rate_interval])",
                                  "{{host}} {{device}}")],
                         p.RATIO, minimum=0, maximum=1), 8),
            ]),
            p.Row(8, [
                (p.graph("Network", "Bytes received (up) and sent (down) per second, per interface.",
                         [p.query(f"rate(opsmon_network_receive_bytes_total{I}[$__rate_interval])",
                                  "{{host}} {{interface}} in"),
                          p.query(f"-rate(opsmon_network_transmit_bytes_total{I}[$__rate_interval])",
                                  "{{host}} {{interface}} out")], p.BYTES_PER_SECOND), 8),
                (p.state("Watched processes", "Each watched process: running or down now (OpsmonProcessDown "
                         "pages).", f"opsmon_process_up{I}", "down", "running",
                         legend="{{host}} {{process}}"), 8),
                (p.graph("Process uptime", "Time since each watched process started: a drop is a restart "
                         "(OpsmonProcessRestarting fires on repeated restarts).",
                         [p.query(f"time() - opsmon_process_start_time_seconds{I}", "{{host}} {{process}}")], p.SECONDS,
                         minimum=0), 8),
            ]),
            p.Row(8, [
                (p.graph("Process CPU", "CPU each watched process uses, in cores (1 = one core fully busy).",
                         [p.query(f"rate(opsmon_process_cpu_seconds_total{I}[$__rate_interval])",
                                  "{{host}} {{process}}")],
                         p.CORES, minimum=0), 8),
                (p.graph("Process memory", "Resident memory of each watched process.",
                         [p.query(f"opsmon_process_resident_memory_bytes{I}", "{{host}} {{process}}")], p.BYTES,
                         minimum=0), 8),
                (p.graph("GPU utilisation", "Share of time each GPU, its encoder and its decoder were busy "
                         "(no data without a GPU).",
                         [p.query(f"opsmon_gpu_utilization_ratio{I}", "{{host}} GPU {{gpu}}"),
                          p.query(f"opsmon_gpu_encoder_utilization_ratio{I}", "{{host}} GPU {{gpu}} encoder"),
                          p.query(f"opsmon_gpu_decoder_utilization_ratio{I}", "{{host}} GPU {{gpu}} decoder")], p.RATIO,
                         minimum=0, maximum=1), 8),
            ]),
            p.Row(8, [
                (p.graph("GPU memory used", "Share of each GPU's memory in use; dashed where "
                         "OpsmonGpuMemoryFull fires.",
                         [p.query(f"opsmon_gpu_memory_used_bytes{I} / opsmon_gpu_memory_total_bytes{I}",
                                  "{{host}} GPU {{gpu}}")], p.RATIO,
                         thresholds=p.above(rules.limit("OpsmonGpuMemoryFull")), minimum=0, maximum=1), 8),
                (p.graph("GPU temperature", "Each GPU's temperature; dashed where OpsmonGpuHot fires.",
                         [p.query(f"opsmon_gpu_temperature_celsius{I}", "{{host}} GPU {{gpu}}")], p.CELSIUS,
                         thresholds=p.above(rules.limit("OpsmonGpuHot"))), 8),
                (p.graph("GPU power", "Power each GPU draws.",
                         [p.query(f"opsmon_gpu_power_watts{I}", "{{host}} GPU {{gpu}}")], p.WATTS, minimum=0), 8),
            ]),
        ],
        variables=[p.variable("instance", "Instance", f"opsmon_cpus{p.on_hosts()}", "instance")],
    )
