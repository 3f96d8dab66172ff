"""The served paths under the same closed-loop load: the PyTorch-eager baseline and local Triton.

Triton runs the generated ensemble (tokenizer -> onnxruntime model -> postprocess, all Python-backend
models) from repository variants that differ only in the options under test: precision, dynamic
batching on/off, model instances. Each measured window also records where the time goes: Triton's
statistics API (queue vs compute per model, batch sizes formed) and CPU milliseconds per process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.baseline_server import BaselineServer, BaselineSettings
from benchmarks.cpu import CpuWindow, Labeller, triton_labeller
from benchmarks.heldout import Heldout
from benchmarks.inputs import BenchInputs
from benchmarks.loadgen import HttpEndpoint, closed_loop, json_text_endpoint, label_all, triton_endpoint
from benchmarks.machine_limits import MatmulWork, cores, limit_for
from benchmarks.results import Accuracy, Row, StageSplit
from triton_bundle.client.client import TritonClient
from triton_bundle.loadtest.metrics_scraper import model_configs, stats_client, summarize, take_sample
from triton_bundle.repository import contract
from triton_bundle.repository.layout import CONFIG_FILE, read_config

Say = Callable[[str], None]


@dataclass(frozen=True)
class LoadPlan:
    concurrencies: Sequence[int]
    duration_s: float
    warmup_s: float


@dataclass(frozen=True)
class ServedConfig:
    """One Triton repository variant."""

    variant: str
    dynamic_batching: bool = True
    instances: int = 1
    max_queue_delay_us: int = 2000
    intra_op_threads: int = 0  # 0: the cores split between instances
    tokenizer_instances: int = 1

    @property
    def threads(self) -> int:
        return self.intra_op_threads or max(1, cores() // self.instances)

    @property
    def label(self) -> str:
        batching = f"dyn-batch {self.max_queue_delay_us}us" if self.dynamic_batching else "no batching"
        return f"triton {self.variant} {batching} x{self.instances}"

    @property
    def slug(self) -> str:
        batching = f"db{self.max_queue_delay_us}" if self.dynamic_batching else "nodb"
        return f"{self.variant}-{batching}-i{self.instances}-t{self.threads}-k{self.tokenizer_instances}"


@dataclass(frozen=True)
class Reference:
    """What accuracy is measured against: FP32 onnxruntime's held-out labels and the model's work."""

    fp32_labels: list[str] | None
    work: dict[str, MatmulWork]
    rates: tuple[float, float]  # fp32 GFLOP/s, int8 GOP/s


def _accuracy(labels: list[str], heldout: Heldout, reference: Reference) -> Accuracy:
    fp32 = reference.fp32_labels or labels
    return Accuracy(
        texts=len(labels),
        agreement_with_fp32=float(np.mean([a == b for a, b in zip(labels, fp32, strict=True)])),
        accuracy=heldout.accuracy(labels),
    )


def _stage_splits(stats: TritonClient, model: str, before, after) -> list[StageSplit]:
    configs = model_configs(stats, sorted(after.models))
    summary = summarize(model, [before, after], configs)
    # The ensemble only routes: its queue / compute figures are its steps' added up.
    return [
        StageSplit(
            model=m.model,
            requests=m.requests,
            avg_batch_size=None if m.avg_batch_size is None else round(m.avg_batch_size, 2),
            queue_ms=None if m.queue_ms is None else round(m.queue_ms, 3),
            compute_ms=None if m.compute_ms is None else round(m.compute_ms, 3),
        )
        for m in summary.models
        if m.platform != "ensemble"
    ]


def drive(
    endpoint: HttpEndpoint,
    texts: Sequence[str],
    plan: LoadPlan,
    cpu_roots: dict[int, Labeller],
    make_row: Callable[[int], Row],
    stats_url: str | None = None,
    model: str | None = None,
) -> list[Row]:
    """One row per concurrency: warm up, then a measured window with CPU and (Triton) server stats."""
    rows = []
    stats = stats_client(stats_url) if stats_url else None
    for concurrency in plan.concurrencies:
        closed_loop(endpoint, texts, concurrency, plan.warmup_s, 0.0)
        before = take_sample(stats, None) if stats is not None else None
        window = CpuWindow(cpu_roots)
        result = closed_loop(endpoint, texts, concurrency, plan.duration_s, 0.0)
        cpu = window.stop(result.requests)
        row = make_row(concurrency)
        row.throughput = round(result.throughput, 2)
        row.latency = result.latency
        row.requests = result.requests
        row.errors = result.errors
        row.cpu = cpu
        if result.first_error:
            row.notes.append(f"first error: {result.first_error[:200]}")
        if stats is not None and model and before is not None:
            row.stages = _stage_splits(stats, model, before, take_sample(stats, None))
        rows.append(row)
    return rows


def _with_limit(row: Row, work: MatmulWork | None, lengths: Sequence[int], rates: tuple[float, float]) -> Row:
    if work is not None:
        row.limit = limit_for(
            work, lengths, row.throughput, rates[0], rates[1], basis="held-out token lengths, unpadded"
        )
    return row


def _empty_row(section: str, name: str, variant: str, concurrency: int) -> Row:
    from benchmarks.loadgen import latency_of

    return Row(
        section=section,  # type: ignore[arg-type]
        name=name,
        variant=variant,
        batch_size=1,
        sequence="real mix",
        concurrency=concurrency,
        throughput=0.0,
        latency=latency_of([]),
        requests=0,
    )


# ------------------------------------------------------------------------------------------- baseline


def run_baseline_section(
    inputs: BenchInputs,
    heldout: Heldout,
    plan: LoadPlan,
    reference: Reference,
    logs: Path,
    workers: int,
    say: Say,
) -> list[Row]:
    torch_threads = max(1, cores() // workers)
    settings = BaselineSettings(
        checkpoint=inputs.checkpoint,
        log_file=logs / "baseline-gunicorn.log",
        workers=workers,
        torch_threads=torch_threads,
        max_length=inputs.spec.shapes.sequence.max,
        top_k=inputs.spec.repository.top_k,
    )
    lengths = heldout.lengths()
    with BaselineServer(settings) as server:
        endpoint = json_text_endpoint("127.0.0.1", server.port)
        accuracy = _accuracy(label_all(endpoint, heldout.texts), heldout, reference)
        workers_pids = set(server.worker_pids)

        def label(process) -> str:
            return "gunicorn worker (torch)" if process.pid in workers_pids else "gunicorn master"

        name = f"pytorch eager fp32 flask+gunicorn {workers}w x{torch_threads}t"

        def make_row(concurrency: int) -> Row:
            row = _empty_row("baseline", name, "pytorch-fp32", concurrency)
            row.accuracy = accuracy
            row.settings = {
                "workers": workers,
                "torch_threads": torch_threads,
                "server": "gunicorn sync + Flask",
            }
            return row

        rows = drive(endpoint, heldout.texts, plan, {server.pid: label}, make_row)
    for row in rows:
        _with_limit(row, reference.work.get("fp32"), lengths, reference.rates)
        say(_line(row))
    return rows


# ------------------------------------------------------------------------------------------- triton


def build_repository(inputs: BenchInputs, config: ServedConfig, root: Path) -> Path:
    from triton_bundle.repository.generate import generate_repository

    repository = generate_repository(
        inputs.spec,
        inputs.private_workdir,
        out_dir=root / config.slug,
        target="local",
        force=True,
        variants=[config.variant],
        instances=config.instances,
        max_queue_delay_us=config.max_queue_delay_us,
        intra_op_threads=config.threads,
        tokenizer_instances=config.tokenizer_instances,
        dynamic_batching=config.dynamic_batching,
    )
    return repository


def run_triton_config(
    inputs: BenchInputs,
    heldout: Heldout,
    config: ServedConfig,
    plan: LoadPlan,
    reference: Reference,
    root: Path,
    say: Say,
) -> list[Row]:
    from triton_bundle.serving.local_triton import LocalTriton, ServerConfig

    name = inputs.spec.name
    repository = build_repository(inputs, config, root / "repositories")
    roles = {
        "ensemble": contract.entry_model(name, inputs.spec.task),
        "tokenizer": contract.tokenizer_model(name),
        "model": contract.tensor_model(name),
        "postprocess": contract.postprocess_model(name),
    }
    server_config = ServerConfig(repository=repository, log_file=root / "logs" / f"triton-{config.slug}.log")
    lengths = heldout.lengths()
    with LocalTriton(server_config) as server:
        host, port = server.http_url.rsplit(":", 1)
        endpoint = triton_endpoint(host, int(port), roles["ensemble"])
        accuracy = _accuracy(label_all(endpoint, heldout.texts), heldout, reference)
        tensor_config = read_config(repository / roles["model"] / CONFIG_FILE)

        def make_row(concurrency: int) -> Row:
            row = _empty_row("served", config.label, config.variant, concurrency)
            row.accuracy = accuracy
            row.settings = {
                "dynamic_batching": config.dynamic_batching,
                "max_queue_delay_us": config.max_queue_delay_us if config.dynamic_batching else None,
                "instances": config.instances,
                "intra_op_threads": config.threads,
                "tokenizer_instances": config.tokenizer_instances,
                "max_batch_size": tensor_config.max_batch_size,
            }
            return row

        rows = drive(
            endpoint,
            heldout.texts,
            plan,
            {server.pid: triton_labeller(roles)},
            make_row,
            stats_url=server.http_url,
            model=roles["ensemble"],
        )
    for row in rows:
        _with_limit(row, reference.work.get(config.variant), lengths, reference.rates)
        say(_line(row))
    return rows


def _line(row: Row) -> str:
    return (
        f"{row.name:<44} c{row.concurrency:<3} {row.throughput:8.1f} req/s  p50 {row.latency.p50_ms:7.1f}  "
        f"p95 {row.latency.p95_ms:7.1f}  p99 {row.latency.p99_ms:7.1f} ms"
    )
