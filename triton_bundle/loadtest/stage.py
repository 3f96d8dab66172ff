"""The load-test stage from a spec: resolve the server, build settings and workload, run, report, record.

result = loadtest_stage(load_spec("examples/minilm-intent/spec.yaml"), Path("artifacts/minilm-intent"))
sys.exit(0 if result.passed else 1)
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from triton_bundle.atomic import ArtifactExistsError
from triton_bundle.loadtest.record import LoadtestDetails, LoadtestRecord
from triton_bundle.loadtest.runner import LoadtestResult, run_loadtest
from triton_bundle.loadtest.settings import (
    Endpoint,
    GenerationSettings,
    LoadSettings,
    LoadtestUsageError,
    Protocol,
    ShapeKind,
    ShapeSettings,
    host_of,
    strip_scheme,
)
from triton_bundle.loadtest.workload import Workload, workload_for
from triton_bundle.manifest import Manifest
from triton_bundle.net import client_host
from triton_bundle.overrides import with_overrides
from triton_bundle.repository.contract import entry_model
from triton_bundle.spec import LoadtestSpec, ModelSpec, SLOSpec

STAGE = "loadtest"
DEFAULT_MAX_TOKENS = 64  # text-generation streams, when neither the spec nor --max-tokens says
_RUN_MARKERS = (
    "locust_settings.json",
    "*/locust_settings.json",
    "report.json",
    "capacity.json",
    "compare.json",
    "tune.json",
)


class Overrides(BaseModel):
    """Command-line values that replace the spec's loadtest section for one run (None: keep the spec's)."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = None
    metrics_url: str | None = None
    http_url: str | None = None
    protocol: Protocol | None = None
    shape: ShapeKind | None = None
    users: int | None = None
    spawn_rate: float | None = None
    duration_s: float | None = None
    max_requests: int | None = None
    request_batch_size: int | None = None
    target_rps: float | None = None
    workers: int | None = None
    think_time_s: float | None = None
    model: str | None = None
    seed: int | None = None
    max_tokens: int | None = None

    def applied_to(self, section: LoadtestSpec) -> LoadtestSpec:
        """The spec's loadtest section with every override of one of its fields applied (validated)."""
        shared = type(self).model_fields.keys() & LoadtestSpec.model_fields.keys()
        return with_overrides(section, **{name: getattr(self, name) for name in shared})


def target_model(spec: ModelSpec, o: Overrides) -> str:
    """--model, else the model clients call for the spec's task (the repository's entry model)."""
    return o.model or entry_model(spec.name, spec.task)


def resolve_endpoint(spec: ModelSpec, o: Overrides) -> Endpoint:
    """URLs from the command line, else from the spec's serving section (same host for all three)."""
    protocol = o.protocol or spec.loadtest.protocol
    host = client_host(spec.serving.host)
    http_default = f"{host}:{spec.serving.http_port}"
    grpc_default = f"{host}:{spec.serving.grpc_port}"
    url = strip_scheme(o.url) if o.url else (http_default if protocol == "http" else grpc_default)
    # When only --url is given, the metrics / statistics endpoints live on that same host.
    url_host = host_of(url)
    metrics = strip_scheme(o.metrics_url) if o.metrics_url else f"{url_host}:{spec.serving.metrics_port}"
    if protocol == "http":
        http = url
    else:
        http = strip_scheme(o.http_url) if o.http_url else f"{url_host}:{spec.serving.http_port}"
    try:
        return Endpoint(protocol=protocol, url=url, metrics_url=metrics, http_url=http)
    except ValueError as exc:
        raise LoadtestUsageError(str(exc)) from None


def build_settings(
    spec: ModelSpec, o: Overrides, run_dir: Path, endpoint: Endpoint | None = None
) -> LoadSettings:
    """Spec loadtest section + overrides -> the settings one run uses."""
    try:
        lt = o.applied_to(spec.loadtest)
        shape = ShapeSettings(
            kind=lt.shape,
            users=lt.users,
            spawn_rate=lt.spawn_rate,
            duration_s=lt.duration_s,
            target_rps=lt.target_rps,
        )
        return LoadSettings(
            model=target_model(spec, o),
            endpoint=endpoint or resolve_endpoint(spec, o),
            shape=shape,
            request_batch_size=lt.request_batch_size,
            max_requests=lt.max_requests,
            think_time_s=o.think_time_s or 0.0,
            workers=(os.cpu_count() or 1) if lt.workers == -1 else lt.workers,
            workload_path=run_dir / "workload.json",
            summary_path=run_dir / "locust_summary.json",
            seed=o.seed or 0,
            generation=generation_settings(spec, o),
        )
    except ValueError as exc:
        raise LoadtestUsageError(f"invalid load-test settings: {exc}") from None


def generation_settings(spec: ModelSpec, o: Overrides) -> GenerationSettings | None:
    """text-generation specs: users stream generations of the spec's (or --max-tokens) length."""
    if spec.task != "text-generation":
        return None
    gen = spec.loadtest.generation
    max_tokens = o.max_tokens or gen.max_tokens or min(DEFAULT_MAX_TOKENS, spec.generation.max_new_tokens)
    return GenerationSettings(max_tokens=max_tokens, temperature=gen.temperature, seed=o.seed)


def prepare_run_dir(path: Path, force: bool) -> Path:
    """An empty directory for one run; replacing an earlier run needs force, other content is refused."""
    path = Path(path).resolve()  # Locust runs in its own cwd: every path handed to it is absolute
    if path.exists() and any(p.is_file() for p in path.rglob("*")):
        # A run dir holds Locust's settings directly (loadtest) or one level down (capacity, compare).
        looks_like_run = any(next(path.glob(pattern), None) for pattern in _RUN_MARKERS)
        if not looks_like_run:
            raise ArtifactExistsError(
                f"{path} is not empty and holds no earlier load test; pick another --out"
            )
        if not force:
            raise ArtifactExistsError(f"{path} holds an earlier load test; pass --force to replace it")
    if path.exists():
        shutil.rmtree(path)  # an earlier run (force) or empty directories left by a failed one
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def local_server(
    spec: ModelSpec, workdir: Path, repository: Path | None, protocol: Protocol | None = None
) -> Iterator[Endpoint]:
    """A local Triton on free ports for the duration of the block (the serving stage's LocalTriton)."""
    from triton_bundle.serving.local_triton import LocalTriton, ServerConfig
    from triton_bundle.serving.paths import default_repository

    config = ServerConfig(
        repository=repository or default_repository(spec.name, workdir),
        log_file=workdir / "loadtest-server" / "tritonserver.log",
        ready_timeout_s=spec.serving.ready_timeout_s,
    )
    with LocalTriton(config) as server:
        protocol = protocol or spec.loadtest.protocol
        yield Endpoint(
            protocol=protocol,
            url=server.grpc_url if protocol == "grpc" else server.http_url,
            metrics_url=server.metrics_url,
            http_url=server.http_url,
        )


def record(workdir: Path, spec: ModelSpec, result: LoadtestResult, stage: str = STAGE) -> LoadtestRecord:
    """The stage's manifest entry: artifacts, headline metrics, the gate."""
    c, s = result.client, result.server
    metrics = {
        "requests": c.requests,
        "failures": c.failures,
        "rps": c.rps,
        "items_per_s": c.items_per_s,
        "error_rate": c.error_rate,
        "p50_ms": c.latency.p50_ms,
        "p95_ms": c.latency.p95_ms,
        "p99_ms": c.latency.p99_ms,
        "server_queue_ms": s.queue_ms,
        "server_compute_ms": s.compute_ms,
        "avg_batch_size": s.avg_batch_size,
    }
    if c.generation is not None:
        g = c.generation
        metrics |= {
            "tokens_per_s": g.tokens_per_s,
            "stream_tokens_per_s_p50": g.stream_tokens_per_s_p50,
            "ttft_p50_ms": g.ttft.p50_ms,
            "ttft_p95_ms": g.ttft.p95_ms,
            "ttft_p99_ms": g.ttft.p99_ms,
            "itl_p50_ms": g.itl.p50_ms,
            "itl_p95_ms": g.itl.p95_ms,
            "itl_p99_ms": g.itl.p99_ms,
        }
    entry = LoadtestRecord(
        stage=stage,
        artifacts={k: v.resolve() for k, v in result.artifacts.items()},
        metrics={k: float(v) for k, v in metrics.items() if v is not None},
        details=LoadtestDetails(
            url=result.settings.endpoint.url,
            protocol=result.settings.endpoint.protocol,
            shape=result.settings.shape.model_dump(),
            request_batch_size=result.settings.request_batch_size,
            workers=result.settings.workers,
            stop_reason=c.stop_reason,
            gate=[check.explain() for check in result.gate.checks],
        ),
        passed=result.passed,
    )
    manifest = Manifest.load(workdir, spec.name)
    manifest.record(entry)
    manifest.save(workdir)
    return entry


def loadtest_stage(
    spec: ModelSpec,
    workdir: Path,
    overrides: Overrides | None = None,
    *,
    out: Path | None = None,
    force: bool = False,
    slo: SLOSpec | None = None,
    endpoint: Endpoint | None = None,
    workload: Workload | None = None,
) -> LoadtestResult:
    """Run the spec's load test against a running server, write the report, record the stage."""
    from triton_bundle.loadtest.report import write_report  # matplotlib: only when a report is written

    overrides = overrides or Overrides()
    run_dir = prepare_run_dir(out or workdir / STAGE, force)
    settings = build_settings(spec, overrides, run_dir, endpoint)
    result = run_loadtest(
        settings, workload or workload_for(spec, seed=settings.seed), slo or spec.loadtest.slo, run_dir
    )
    result = result.model_copy(update={"artifacts": write_report(result, run_dir)})
    record(workdir, spec, result)
    return result
