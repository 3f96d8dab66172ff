"""Can the load test measure a fast server? Locust against perf_analyzer on a model that is never the
bottleneck (the test fixtures' stand-in ensemble, which answers at once), over HTTP and gRPC:

    python benchmarks/loadgen_compare.py --concurrency 4 --duration 10 [--workers 0] [--out reports/loadgen]

Starts a local Triton on free ports with tests/fixtures/loadtest_models, runs `loadtest-compare`'s stage
per protocol (Locust first, then perf_analyzer, same concurrency and batch size), prints the table and
writes loadgen_compare.json with the machine's load averages (the ratio is only as good as the box is
quiet: the client, the server and anything else share its cores).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from triton_bundle.atomic import write_text_atomic
from triton_bundle.loadtest.compare import CompareResult, compare_stage
from triton_bundle.loadtest.perf_analyzer import find_perf_analyzer
from triton_bundle.loadtest.settings import Endpoint
from triton_bundle.loadtest.stage import Overrides
from triton_bundle.serving.local_triton import LocalTriton, ServerConfig
from triton_bundle.spec import load_spec

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
MODELS = ("fake-intent", "fake-intent_model")
console = Console(width=None if sys.stdout.isatty() else 160)
app = typer.Typer(add_completion=False, help=__doc__)


class LoadgenReport(BaseModel):
    started_at: str
    cores: int
    load_average_before: tuple[float, float, float]
    load_average_after: tuple[float, float, float] | None = None
    workers: int
    results: list[CompareResult]


def echo_repository(root: Path) -> Path:
    """The stand-in ensemble (TEXT -> LABELS / SCORES / PROBABILITIES at no cost) in a fresh directory."""
    repo = root / "repository"
    for name in MODELS:
        shutil.copytree(FIXTURES / "loadtest_models" / name, repo / name)
        (repo / name / "1").mkdir()
    shutil.copy(FIXTURES / "loadtest_models" / "model.py", repo / "fake-intent_model" / "1" / "model.py")
    return repo


def _endpoint(server: LocalTriton, protocol: str) -> Endpoint:
    url = server.grpc_url if protocol == "grpc" else server.http_url
    return Endpoint(protocol=protocol, url=url, metrics_url=server.metrics_url, http_url=server.http_url)


def _table(results: list[CompareResult]) -> Table:
    table = Table(title="Locust vs perf_analyzer on the stand-in ensemble (answers at once)")
    for column in ("protocol", "conc.", "tool", "requests", "req/s", "p50 ms", "p95 ms", "locust / pa"):
        table.add_column(column, justify="left" if column in ("protocol", "tool") else "right")
    for result in results:
        for row in result.rows:
            ratio = (
                f"{result.throughput_ratio:.2f}" if row.tool == "locust" and result.throughput_ratio else ""
            )
            table.add_row(
                result.protocol, str(result.concurrency), row.tool, str(row.requests), f"{row.rps:.0f}",
                f"{row.p50_ms or 0:.2f}", f"{row.p95_ms or 0:.2f}", ratio,
            )  # fmt: skip
    return table


@app.command()
def main(
    concurrency: Annotated[int, typer.Option(min=1)] = 4,
    duration: Annotated[float, typer.Option(min=1, help="seconds per tool and protocol")] = 10.0,
    workers: Annotated[int, typer.Option(min=0, help="Locust worker processes (--processes); 0: one")] = 0,
    protocols: Annotated[str, typer.Option(help="comma-separated: http,grpc")] = "http,grpc",
    out: Annotated[Path, typer.Option()] = ROOT / "reports" / "loadgen",
) -> None:
    """Run the comparison and write loadgen_compare.json."""
    spec = load_spec(FIXTURES / "loadtest_spec" / "spec.yaml")
    install = find_perf_analyzer()
    report = LoadgenReport(
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        cores=os.cpu_count() or 1,
        load_average_before=os.getloadavg(),
        workers=workers,
        results=[],
    )
    with tempfile.TemporaryDirectory(prefix="loadgen-") as tmp:
        repo = echo_repository(Path(tmp))
        with LocalTriton(ServerConfig(repository=repo, log_file=Path(tmp) / "triton.log")) as server:
            for protocol in (p.strip() for p in protocols.split(",") if p.strip()):
                overrides = Overrides(duration_s=duration, max_requests=10_000_000, workers=workers)
                report.results.append(
                    compare_stage(
                        spec, Path(tmp) / protocol, install, concurrency=concurrency, overrides=overrides,
                        endpoint=_endpoint(server, protocol), force=True,
                    )
                )  # fmt: skip
    report.load_average_after = os.getloadavg()
    console.print(_table(report.results))
    for result in report.results:
        console.print(f"{result.protocol}: {result.verdict()}")
    console.print(f"load average before {report.load_average_before}, after {report.load_average_after}")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "loadgen_compare.json", report.model_dump_json(indent=2))


if __name__ == "__main__":
    app()
