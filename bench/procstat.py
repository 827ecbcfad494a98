"""CPU time of the machine and of named processes, from ``/proc`` (Linux), for the figures that
charge each consumer (worker pool, SeaweedFS, PostgreSQL, Redis, a training job) its share.
"""

from __future__ import annotations

import contextlib
import os
import resource
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
# Process name prefix (comm) -> the consumer it is charged to.
SERVICES = {"weed": "seaweedfs", "postgres": "postgresql", "redis-server": "redis"}


def _stat_cpu(stat: str) -> float:
    """utime + stime in seconds, from the text of /proc/<pid>/stat."""
    rest = stat[stat.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / _TICK


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def cpu_snapshot(pool_pid: int | None = None) -> dict[str, float]:
    """CPU seconds so far: the whole machine (busy), the worker pool process, the services."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    busy = sum(int(v) for v in fields) - int(fields[3]) - int(fields[4])  # minus idle, iowait
    out = {"machine_busy": busy / _TICK}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        name = "worker_pool" if pool_pid and int(proc.name) == pool_pid else None
        name = name or next((v for k, v in SERVICES.items() if comm.startswith(k)), None)
        if name is None and "train" in _cmdline(proc):
            name = "training"
        if name:
            out[name] = out.get(name, 0.0) + _stat_cpu(stat)
    return out


def cpu_per_image(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
    """CPU ms per image of each consumer between two snapshots; 'other' is the rest."""
    out = {k: round((after.get(k, 0.0) - before.get(k, 0.0)) * 1000 / n, 2) for k in after}
    named = sum(v for k, v in out.items() if k != "machine_busy")
    out["other"] = round(out["machine_busy"] - named, 2)
    return out


def pids_named(prefix: str) -> list[int]:
    """The processes whose name (comm) starts with ``prefix``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "comm").read_text().startswith(prefix):
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def processes_cpu(pids: list[int]) -> float:
    """CPU seconds so far of ``pids`` together (a process that is gone counts 0)."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += _stat_cpu(Path(f"/proc/{pid}/stat").read_text())
    return total


def children_cpu() -> float:
    """CPU seconds of this process's children that have been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime
