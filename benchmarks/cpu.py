"""Where the CPU goes during a measured window: CPU seconds per process, labelled by role.

On a 2-core box the client, Triton's core, each Python-backend stub and the model share the cores, so
"CPU milliseconds per request" per process says which one a faster model would not help.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from benchmarks.results import CpuSplit

Labeller = Callable[[psutil.Process], str]


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _tree(root: int) -> list[psutil.Process]:
    try:
        parent = psutil.Process(root)
        return [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def triton_labeller(model_names: dict[str, str]) -> Labeller:
    """tritonserver itself, and each Python-backend stub by the model whose directory it runs."""

    def label(process: psutil.Process) -> str:
        try:
            cmdline = " ".join(process.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return "other"
        if "triton_python_backend_stub" not in cmdline:
            return "tritonserver"
        # Longest name first: "<name>_model" must not be taken for the ensemble "<name>".
        for role, name in sorted(model_names.items(), key=lambda item: -len(item[1])):
            if f"/{name}/" in cmdline:
                return f"stub:{role}"
        return "stub:other"

    return label


@dataclass
class CpuWindow:
    """Snapshot now, again at stop(); the difference per label."""

    roots: dict[int, Labeller]  # process tree root pid -> how to label its processes
    client_label: str = "client"

    def __post_init__(self) -> None:
        self._start = time.perf_counter()
        self._before = self._snapshot()

    def _snapshot(self) -> dict[tuple[int, str], float]:
        seen: dict[tuple[int, str], float] = {}
        own = psutil.Process(os.getpid())
        seen[(own.pid, self.client_label)] = _cpu_seconds(own)
        for root, labeller in self.roots.items():
            for process in _tree(root):
                try:
                    seen[(process.pid, labeller(process))] = _cpu_seconds(process)
                except psutil.NoSuchProcess:
                    continue
        return seen

    def stop(self, requests: int) -> CpuSplit:
        after = self._snapshot()
        wall = time.perf_counter() - self._start
        per_label: dict[str, float] = {}
        for key, seconds in after.items():
            used = seconds - self._before.get(key, 0.0)
            per_label[key[1]] = per_label.get(key[1], 0.0) + max(0.0, used)
        total = sum(per_label.values())
        per_request = {
            label: round(seconds * 1000.0 / max(1, requests), 3)
            for label, seconds in sorted(per_label.items())
        }
        return CpuSplit(
            per_request_ms=per_request, wall_s=round(wall, 3), cpu_utilisation=round(total / wall, 3)
        )
