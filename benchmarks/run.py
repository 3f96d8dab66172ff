"""Benchmarks side by side, one command on one machine with the same inputs:

    python benchmarks/run.py --spec examples/minilm-intent/spec.yaml [--quick] [--out reports/benchmarks]

PyTorch-eager HTTP baseline, onnxruntime FP32 / FP16 / INT8 Q/DQ / INT8 dynamic in-process, local Triton
through the ensemble (dynamic batching on/off, 1 and 2 instances), and GPU rows where TensorRT and a GPU
exist. Writes benchmark.json, benchmark.md and plots/ under --out and prints the headline table.
"""

from __future__ import annotations

import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (`python benchmarks/run.py`): make the checkout importable as in `-m benchmarks.run`.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import typer
from rich.console import Console

from benchmarks import gpu, machine_limits, ort_inprocess, report, served, targets
from benchmarks.heldout import Heldout
from benchmarks.inputs import BenchInputs, prepare_inputs
from benchmarks.results import BenchmarkReport, MachineInfo, Row, SkippedSection
from benchmarks.settings import BenchSettings, preset, with_overrides
from triton_bundle.entry import run_entry
from triton_bundle.errors import BundleError
from triton_bundle.export.record import ExportRecord
from triton_bundle.manifest import Manifest
from triton_bundle.repository.sources import labels_for
from triton_bundle.spec import load_spec

# Wide enough for the results table when the output is a log file, not a terminal.
console = Console(width=None if sys.stdout.isatty() else 180)
app = typer.Typer(add_completion=False, help=__doc__)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    def version(name: str) -> str:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return "-"

    return {
        "onnxruntime": version("onnxruntime"),
        "torch": version("torch"),
        "triton": f"2.51 (nvidia-pytriton {version('nvidia-pytriton')})",
    }


def _say(message: str) -> None:
    console.print(f"  {message}", highlight=False)


class Sections:
    """Runs each section; a failing section is reported as skipped with its error, the rest go on."""

    def __init__(self, result: BenchmarkReport, settings: BenchSettings) -> None:
        self.result = result
        self.settings = settings

    def run(self, name: str, body: Callable[[], list[Row]]) -> None:
        if name not in self.settings.sections:
            return
        console.rule(f"[bold cyan]{name}")
        started = time.perf_counter()
        try:
            self.result.rows += body()
        except (BundleError, OSError, RuntimeError, ValueError) as exc:
            reason = f"{type(exc).__name__}: {str(exc).strip()}"
            console.print(f"[red]{name} failed:[/] {reason}")
            if os.environ.get("BENCH_TRACEBACK"):
                traceback.print_exc()
            self.result.skipped.append(SkippedSection(section=name, reason=reason))
        console.print(f"  ({time.perf_counter() - started:.0f} s)")


def _fit_feeds(inputs: BenchInputs, heldout: Heldout) -> dict[int, dict]:
    longest = max(heldout.texts, key=len)
    lengths = machine_limits.fit_lengths(heldout.max_length)
    return {length: heldout.feeds([longest], inputs.input_names, pad_to=length) for length in lengths}


def _new_report(model: str, mode: str, cores: int) -> BenchmarkReport:
    versions = _versions()
    return BenchmarkReport(
        model=model,
        mode=mode,  # type: ignore[arg-type]
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        wall_s=0.0,
        machine=MachineInfo(
            cpu_model=_cpu_model(),
            cores=cores,
            load_average_before=os.getloadavg(),
            python=platform.python_version(),
            onnxruntime=versions["onnxruntime"],
            torch=versions["torch"],
            triton=versions["triton"],
        ),
    )


def _describe_heldout(result: BenchmarkReport, heldout: Heldout, lengths: list[int], inputs) -> None:
    result.notes.append(
        f"held-out token lengths: mean {sum(lengths) / len(lengths):.1f}, median {sorted(lengths)[len(lengths) // 2]}, "
        f"max {max(lengths)} ({sum(1 for v in lengths if v == max(lengths))} of {len(lengths)} texts at the max)"
    )
    _say(
        f"{len(heldout.texts)} held-out texts, {sum(lengths) / len(lengths):.1f} tokens on average "
        f"(min {min(lengths)}, max {max(lengths)}); variants {list(inputs.variants)}"
    )


def _rescore_limits(result: BenchmarkReport, settings: BenchSettings) -> None:
    # Matmul speed on a shared box moves with the load: the end-of-run measurement may beat the
    # first one, and a limit must be the best the box did, so every row is scored against the best.
    fp = machine_limits.measure_matmul("fp32", seconds=settings.matmul_seconds)
    i8 = machine_limits.measure_matmul("int8", seconds=settings.matmul_seconds)
    result.machine.matmul += [fp, i8]
    best = (
        max(r.best_gops for r in result.machine.matmul if r.kind == "fp32"),
        max(r.best_gops for r in result.machine.matmul if r.kind == "int8"),
    )
    _say(f"matmul again at the end: fp32 {fp.best_gops:.0f} GFLOP/s, int8 {i8.best_gops:.0f} GOP/s")
    for row in result.rows:
        if row.limit is not None:
            row.limit = machine_limits.rescored(row.limit, row.throughput, *best)


def _measure_limits(
    result: BenchmarkReport,
    settings: BenchSettings,
    inputs: BenchInputs,
    heldout: Heldout,
    work: dict[str, machine_limits.MatmulWork],
) -> tuple[float, float]:
    """The machine's matmul rates and each variant's work per sequence (fills `work`)."""
    fp = machine_limits.measure_matmul("fp32", seconds=settings.matmul_seconds)
    i8 = machine_limits.measure_matmul("int8", seconds=settings.matmul_seconds)
    result.machine.matmul = [fp, i8]
    _say(
        f"matmul {fp.size}^3 on {fp.threads} threads: fp32 {fp.best_gops:.0f} GFLOP/s, int8 {i8.best_gops:.0f} GOP/s"
    )
    feeds = _fit_feeds(inputs, heldout)
    lengths = heldout.lengths()
    mean = sum(lengths) / len(lengths)
    for variant, path in inputs.variants.items():
        work[variant] = machine_limits.matmul_work(path, feeds)
        _say(
            f"{variant}: {(work[variant].fp_flops(mean) + work[variant].int8_ops(mean)) / 1e9:.3f} GFLOP per held-out sequence"
        )
    return fp.best_gops, i8.best_gops


def _served_rows(
    result: BenchmarkReport,
    settings: BenchSettings,
    inputs: BenchInputs,
    heldout: Heldout,
    reference: served.Reference,
    workdir: Path,
) -> list[Row]:
    rows: list[Row] = []
    for config in settings.served:
        if config.variant not in inputs.variants:
            result.notes.append(f"served {config.label}: variant {config.variant} is not available")
            continue
        _say(f"[bold]{config.label}[/] (intra-op threads {config.threads})")
        rows += served.run_triton_config(inputs, heldout, config, settings.load, reference, workdir, _say)
    return rows


def _gpu_rows(
    result: BenchmarkReport,
    settings: BenchSettings,
    inputs: BenchInputs,
    heldout: Heldout,
    reference: served.Reference,
    labels: list[str],
    gpu_triton_url: str | None,
) -> list[Row]:
    rows, notes = gpu.run_gpu_section(
        inputs,
        heldout,
        settings.batch_sizes,
        settings.ort_seconds,
        reference,
        labels,
        settings.load,
        gpu_triton_url,
        _say,
    )
    if not rows:
        result.skipped.append(SkippedSection(section="gpu", reason="; ".join(notes)))
    else:
        result.notes.extend(f"gpu: {n}" for n in notes)
    return rows


def run_benchmark(
    spec_path: Path, workdir: Path | None, out: Path, settings: BenchSettings, gpu_triton_url: str | None
) -> BenchmarkReport:
    started = time.perf_counter()
    spec = load_spec(spec_path)
    workdir = workdir or spec.default_workdir()
    cores = machine_limits.cores()
    result = _new_report(spec.name, settings.mode, cores)
    console.rule(f"[bold cyan]inputs ({workdir})")
    inputs = prepare_inputs(spec, workdir, out, settings.variants, _say)
    result.inputs = inputs.provenance
    result.notes += inputs.notes
    labels = (
        labels_for(spec, Manifest.load(inputs.workdir, spec.name).get(ExportRecord), inputs.checkpoint) or []
    )
    heldout = Heldout.load(spec, inputs.checkpoint, labels)
    lengths = heldout.lengths()
    _describe_heldout(result, heldout, lengths, inputs)
    sections = Sections(result, settings)

    work: dict[str, machine_limits.MatmulWork] = {}
    rates = (0.0, 0.0)

    def limits() -> list[Row]:
        nonlocal rates
        rates = _measure_limits(result, settings, inputs, heldout, work)
        return []

    sections.run("limits", limits)

    predictions: dict[str, list[str]] = {}
    # Labels come from batches of the spec's largest batch, as the precision gate measures them: dynamic
    # INT8 quantizes activations per batch, so its labels depend a little on what shares the batch.
    accuracy_batch = spec.shapes.batch.max

    def ort() -> list[Row]:
        plan = ort_inprocess.OrtPlan(settings.batch_sizes, settings.sequences, settings.ort_seconds)
        rows, found, notes = ort_inprocess.run_ort_section(
            inputs.variants, heldout, inputs.input_names, labels, plan, work, rates, _say, accuracy_batch
        )
        predictions.update(found)
        result.notes.extend(notes)
        return rows

    sections.run("ort", ort)
    if "fp32" not in predictions:
        session = ort_inprocess.session_for(inputs.variants["fp32"])
        predictions["fp32"] = ort_inprocess.predict_labels(
            session, heldout, inputs.input_names, labels, accuracy_batch
        )
    reference = served.Reference(predictions["fp32"], work, rates)
    logs = Path(out).resolve() / "work" / "logs"

    sections.run(
        "baseline",
        lambda: served.run_baseline_section(
            inputs, heldout, settings.load, reference, logs, settings.baseline_workers, _say
        ),
    )

    def triton() -> list[Row]:
        return _served_rows(result, settings, inputs, heldout, reference, Path(out).resolve() / "work")

    sections.run("served", triton)

    def gpu_rows() -> list[Row]:
        return _gpu_rows(result, settings, inputs, heldout, reference, labels, gpu_triton_url)

    sections.run("gpu", gpu_rows)

    if rates != (0.0, 0.0):
        _rescore_limits(result, settings)
    result.targets = [
        targets.speedup_target(result.section("baseline"), result.section("served"), cores),
        targets.p50_target(result.section("served"), cores),
        *targets.batching_targets(result.section("served"), cores, lengths, result.section("ort")),
    ]
    result.machine.load_average_after = os.getloadavg()
    result.wall_s = round(time.perf_counter() - started, 1)
    return result


@app.command()
def main(
    spec: Path = typer.Option(..., "--spec", exists=True, dir_okay=False, help="the model's spec.yaml"),
    workdir: Path | None = typer.Option(None, help="stage outputs to reuse (default: artifacts/<name>)"),
    out: Path = typer.Option(Path("reports/benchmarks"), help="where benchmark.json / .md / plots go"),
    quick: bool = typer.Option(False, "--quick", help="fewer shapes, shorter windows (a few minutes)"),
    sections: str | None = typer.Option(None, help="comma list of limits,ort,baseline,served,gpu"),
    variants: str | None = typer.Option(None, help="comma list of fp32,fp16,int8,int8-dynamic"),
    batch_sizes: str | None = typer.Option(None, help="in-process batch sizes, e.g. 1,8,32"),
    concurrency: str | None = typer.Option(None, help="closed-loop concurrencies, e.g. 1,4,16,32"),
    duration: float | None = typer.Option(None, help="seconds measured per concurrency"),
    served_configs: str | None = typer.Option(
        None, "--served", help="Triton variants, e.g. int8-dynamic:dyn:1,int8-dynamic:off:1,fp32:dyn:2"
    ),
    baseline_workers: int | None = typer.Option(
        None, help="gunicorn workers for the baseline (default: cores)"
    ),
    gpu_triton_url: str | None = typer.Option(None, help="host:port of a running GPU Triton (NVIDIA image)"),
) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings = with_overrides(
        preset(quick, machine_limits.cores()),
        sections=sections,
        variants=variants,
        batch_sizes=batch_sizes,
        concurrency=concurrency,
        duration_s=duration,
        served=served_configs,
        baseline_workers=baseline_workers,
    )
    result = run_benchmark(spec, workdir, out, settings, gpu_triton_url)
    paths = report.write_all(result, out)
    report.print_table(result, console)
    console.print(f"wrote {paths['json']} and {paths['markdown']} ({result.wall_s:.0f} s)")


if __name__ == "__main__":
    run_entry(app)
