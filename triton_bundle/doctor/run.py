"""Run every check for a target and say what to do next."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from triton_bundle.doctor.checks import (
    CheckResult,
    Probe,
    Target,
    probe_disk,
    probe_docker,
    probe_gpu,
    probe_local_triton,
    probe_ports,
    probe_tensorrt,
    probe_tensorrt_rtx,
)

# What each target cannot do without; every other check that fails is a warning.
REQUIRED: dict[Target, frozenset[str]] = {
    "local": frozenset({"local Triton", "ports"}),
    "nvidia": frozenset({"NVIDIA GPU", "Docker", "NVIDIA container runtime"}),
}


def _result(name: str, probe: Probe, target: Target) -> CheckResult:
    required = name in REQUIRED[target]
    status = "ok" if probe.passed else ("fail" if required else "warn")
    return CheckResult(name, status, probe.detail, "" if probe.passed else probe.fix, required)


def run_checks(
    target: Target,
    host: str,
    ports: Sequence[int],
    workdir: Path,
    which: Callable[[str], str | None] = shutil.which,
    cache_root: Path | None = None,
) -> list[CheckResult]:
    """Every check, in the order a user fixes them: the local server first, then the GPU path."""
    probes: list[tuple[str, Probe]] = [("local Triton", probe_local_triton(cache_root))]
    probes.append(("ports", probe_ports(host, list(ports))))
    probes.append(("disk", probe_disk(workdir)))
    probes.append(("NVIDIA GPU", probe_gpu(which)))
    docker, runtime = probe_docker(which)
    probes += [("Docker", docker), ("NVIDIA container runtime", runtime)]
    probes += [("TensorRT", probe_tensorrt()), ("TensorRT for RTX", probe_tensorrt_rtx())]
    return [_result(name, probe, target) for name, probe in probes]


def exit_code(results: Sequence[CheckResult]) -> int:
    """0: the target can run here (warnings allowed); 1: a required check failed."""
    return 1 if any(r.status == "fail" for r in results) else 0


def next_steps(results: Sequence[CheckResult]) -> list[str]:
    ok = {r.name for r in results if r.status == "ok"}
    ports_free = "ports" in ok
    steps: list[str] = []
    if "local Triton" in ok:
        steps.append("triton-bundle init CHECKPOINT --data HELDOUT.jsonl   # then the commands it prints")
        steps.append(
            "make demo                                          # the whole pipeline on the demo model"
        )
        if not ports_free:
            steps.append(
                "triton-bundle serve SPEC --http-port 0 --grpc-port 0 --metrics-port 0   # ports taken"
            )
    if {"NVIDIA GPU", "Docker", "NVIDIA container runtime"} <= ok:
        steps.append("docker compose -f docker/compose.yaml --profile build run --rm build-engines")
    elif "TensorRT for RTX" in ok:
        steps.append(
            "triton-bundle build SPEC --aot-check                # TensorRT accepts the graph (no GPU)"
        )
    return steps
