"""What /proc says about a process and the machine: CPU time, resident memory, threads, load;
and the machine's description for a result file. Linux only, as the evidence tools are."""

from __future__ import annotations

import os
import platform
import resource
from pathlib import Path

CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def proc_status(pid: str | int = "self") -> dict:
    """VmRSS (MiB, as `rss_mb`) and thread count of a live process, from /proc/PID/status."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key == "VmRSS":
            values["rss_mb"] = round(int(rest.split()[0]) / 1024, 1)
        elif key == "Threads":
            values["threads"] = int(rest)
    return values


def rss_mb(pid: str | int = "self") -> float:
    """Resident memory of a process, in MiB."""
    return proc_status(pid).get("rss_mb", float("nan"))


def process_cpu_s(pid: int) -> float | None:
    """utime + stime of a live process, all its threads, in seconds; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def children_cpu_s() -> float:
    """User + system CPU of this process's children that have been waited for, in seconds."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_busy_s() -> float:
    """CPU seconds all cores spent busy since boot (everything but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:8]]
    return (sum(values) - values[3] - values[4]) / CLOCK_TICK


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_info(runtime: bool = False) -> dict:
    """The CPU model, cores, Python and platform; with `runtime`, NumPy's and ONNX Runtime's versions."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    versions = {}
    if runtime:
        import numpy
        import onnxruntime

        versions = {"numpy": numpy.__version__, "onnxruntime": onnxruntime.__version__}
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        **versions,
        "platform": platform.platform(),
    }
