"""Load tests against a real local Triton serving stand-in ensembles with the client contract.

`fake-intent` answers at once; `slow-intent` costs 10 ms + 15 ms per item per execution on one instance,
so its latency grows with load (a failing SLO and a capacity boundary without relying on machine speed).
Every run is a few seconds and a few hundred requests.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
from pathlib import Path

import matplotlib.image
import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from triton_bundle.atomic import ArtifactExistsError
from triton_bundle.loadtest.capacity import capacity_stage
from triton_bundle.loadtest.cli import register
from triton_bundle.loadtest.settings import Endpoint
from triton_bundle.loadtest.stage import Overrides, loadtest_stage
from triton_bundle.manifest import Manifest
from triton_bundle.serving.local_triton import LocalTriton, ServerConfig
from triton_bundle.spec import SLOSpec, load_spec

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "fixtures"
SPEC = FIXTURES / "loadtest_spec" / "spec.yaml"
MODELS = ("fake-intent", "slow-intent")


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory):
    """The stand-in repository (configs + one shared model.py) served on free ports."""
    repo = tmp_path_factory.mktemp("loadtest_repo")
    for name in MODELS:
        shutil.copytree(FIXTURES / "loadtest_models" / name, repo / name)
        (repo / name / "1").mkdir()
        shutil.copytree(FIXTURES / "loadtest_models" / f"{name}_model", repo / f"{name}_model")
        (repo / f"{name}_model" / "1").mkdir()
        shutil.copy(FIXTURES / "loadtest_models" / "model.py", repo / f"{name}_model" / "1" / "model.py")
    config = ServerConfig(repository=repo, log_file=repo.parent / "triton.log")
    with LocalTriton(config) as server:
        yield server


@pytest.fixture(scope="module")
def spec():
    return load_spec(SPEC)


@pytest.fixture()
def cli():
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _http(server: LocalTriton) -> Endpoint:
    return Endpoint(
        protocol="http", url=server.http_url, metrics_url=server.metrics_url, http_url=server.http_url
    )


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", data[16:24])
    assert width > 300 and height > 200, path
    pixels = matplotlib.image.imread(path)
    # Not a blank canvas: a plot has many distinct colours.
    assert len({tuple(p) for p in pixels.reshape(-1, pixels.shape[-1])[::97]}) > 5, path


def test_passing_run_exits_0_with_reports_plots_and_manifest(triton, spec, cli, tmp_path: Path):
    result = cli(
        "loadtest", SPEC, "-w", tmp_path, "--url", triton.http_url, "--metrics-url", triton.metrics_url,
        "-u", 2, "-t", 3, "-n", 300, "-b", 2,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "all SLOs met" in result.output and "p95 latency" in result.output

    out = tmp_path / "loadtest"
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] is True and report["failed_slos"] == []
    client = report["result"]["client"]
    assert 0 < client["requests"] <= 300 and client["failures"] == 0
    assert client["request_batch_size"] == 2
    assert report["result"]["settings"]["outputs"] == ["LABELS", "SCORES", "PROBABILITIES"]
    server = report["result"]["server"]
    steps = {m["model"]: m for m in server["models"]}
    assert set(steps) == {"fake-intent", "fake-intent_model"}
    # Triton saw every request the client completed, 2 items each.
    assert steps["fake-intent"]["requests"] >= client["requests"]
    assert steps["fake-intent_model"]["inferences"] >= 2 * client["requests"]
    assert server["queue_ms"] is not None and server["compute_ms"] > 0
    assert server["cpu_utilization_avg"] is not None and server["samples"] >= 2
    assert report["timeline"] and sum(p["rps"] for p in report["timeline"]) == client["requests"]

    summary = (out / "summary.md").read_text()
    assert "PASSED" in summary and "| p95 latency (max) | 2000 ms |" in summary
    for png in ("timeline.png", "latency_histogram.png", "server_split.png"):
        _assert_png(out / png)
    for locust_file in ("locust_stats.csv", "locust_stats_history.csv", "locust_report.html"):
        assert (out / locust_file).stat().st_size > 0
    stats_csv = (out / "locust_stats.csv").read_text().splitlines()
    assert stats_csv[-1].startswith(",Aggregated,") and f",{client['requests']}," in stats_csv[-1]

    record = Manifest.load(tmp_path, spec.name).require("loadtest", "triton-bundle loadtest")
    assert record.passed and record.metrics["requests"] == client["requests"]
    assert record.artifacts["timeline_png"] == (out / "timeline.png").resolve()

    with pytest.raises(ArtifactExistsError, match="--force"):  # the top-level CLI turns it into exit 2
        cli("loadtest", SPEC, "-w", tmp_path, "--url", triton.http_url, "-t", 1)


def test_missed_slo_exits_1_and_says_which_and_by_how_much(triton, cli, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative workdir, as `make demo` uses: Locust runs in its own cwd
    result = cli(
        "loadtest", SPEC, "-w", ".", "--url", triton.http_url, "--metrics-url", triton.metrics_url,
        "--model", "slow-intent", "-u", 4, "-t", 3, "-n", 200, "--p95-ms", 5,
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "FAILED: p95 latency" in result.output and "over by" in result.output

    report = json.loads((tmp_path / "loadtest" / "report.json").read_text())
    assert report["passed"] is False and report["failed_slos"] == ["p95_ms"]
    p95 = next(c for c in report["result"]["gate"]["checks"] if c["name"] == "p95_ms")
    assert p95["measured"] > 5 and p95["margin"] == pytest.approx(5 - p95["measured"])
    assert "**FAIL**" in (tmp_path / "loadtest" / "summary.md").read_text()
    # The slow model's time is visible on the server side: the 10 ms + 15 ms/item sleep is compute.
    assert report["result"]["server"]["compute_ms"] > 10
    assert report["result"]["server"]["bottleneck_model"] == "slow-intent_model"


def test_grpc_run_stops_at_the_request_cap(triton, spec, tmp_path: Path):
    endpoint = Endpoint(
        protocol="grpc", url=triton.grpc_url, metrics_url=triton.metrics_url, http_url=triton.http_url
    )
    result = loadtest_stage(
        spec, tmp_path, Overrides(users=3, duration_s=60, max_requests=150), endpoint=endpoint
    )
    assert result.passed, result.gate.explain()
    assert result.client.requests == 150 and "request cap" in result.client.stop_reason
    assert result.client.failures == 0
    assert result.server.models[0].requests >= 150
    # The summary a person reads keeps the model names, metrics and report paths whole at 80 columns.
    from triton_bundle.loadtest.render import print_result

    out = Console(width=80, record=True, file=io.StringIO(), color_system=None)
    print_result(result, out=out)
    text = out.export_text()
    assert "…" not in text, text
    assert result.server.bottleneck_model and result.server.bottleneck_model in text
    for check in result.gate.checks:
        assert check.description in text
    for key in ("summary_md", "report_json"):
        assert str(result.artifacts[key]) in text


def test_two_workers_share_an_arrival_rate(triton, spec, tmp_path: Path):
    target, seconds = 20.0, 4.0
    result = loadtest_stage(
        spec,
        tmp_path,
        Overrides(shape="arrival-rate", target_rps=target, duration_s=seconds, workers=2, max_requests=1000),
        endpoint=_http(triton),
        slo=SLOSpec(max_error_rate=0.0),
    )
    assert result.client.workers == 2
    assert result.client.failures == 0 and result.client.requests > 0
    # Both workers' per-second histograms reached the master: they account for every request.
    assert sum(b.requests for b in result.client.timeline) == result.client.requests
    assert sum(result.client.histogram.values()) == result.client.requests
    # Paced users: a closed loop would send thousands here; the offered rate bounds the count.
    assert result.client.requests <= target * (seconds + 1) + result.settings.shape.pool_users()
    assert result.passed


def test_capacity_search_converges_on_the_slow_model(triton, spec, tmp_path: Path):
    result = capacity_stage(
        spec,
        tmp_path,
        mode="users",
        start=2,
        limit=32,
        max_steps=7,
        step_duration_s=2.0,
        overrides=Overrides(model="slow-intent", max_requests=500),
        endpoint=_http(triton),
        slo=SLOSpec(p95_ms=150, max_error_rate=0.0),
    )
    assert result.converged, result.note
    assert result.best is not None and result.best < 32 and result.lowest_failing is not None
    assert len(result.steps) <= 7
    passed = [s.level for s in result.steps if s.passed]
    failed = [s.level for s in result.steps if not s.passed]
    assert max(passed) == result.best and min(failed) == result.lowest_failing
    assert result.lowest_failing - result.best <= 1
    _assert_png(tmp_path / "capacity" / "capacity.png")
    saved = json.loads((tmp_path / "capacity" / "capacity.json").read_text())
    assert saved["best"] == result.best
    assert Manifest.load(tmp_path, spec.name).require("capacity", "triton-bundle capacity").passed


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_compare_runs_perf_analyzer_at_the_same_concurrency(triton, spec, tmp_path: Path, protocol: str):
    from triton_bundle.loadtest.compare import compare_stage
    from triton_bundle.loadtest.perf_analyzer import (
        PerfAnalyzerError,
        PerfAnalyzerNotFoundError,
        find_perf_analyzer,
        install_perf_analyzer,
    )

    try:
        install = find_perf_analyzer()
    except PerfAnalyzerNotFoundError:
        try:
            install = install_perf_analyzer()  # pip download of tritonclient 2.51.0, cached afterwards
        except (PerfAnalyzerError, PerfAnalyzerNotFoundError, OSError) as exc:
            pytest.skip(f"perf_analyzer unavailable here: {exc}")
    endpoint = _http(triton)
    if protocol == "grpc":
        endpoint = Endpoint(
            protocol="grpc", url=triton.grpc_url, metrics_url=triton.metrics_url, http_url=triton.http_url
        )
    result = compare_stage(
        spec,
        tmp_path,
        install,
        concurrency=2,
        overrides=Overrides(duration_s=2, max_requests=300),
        endpoint=endpoint,
    )
    locust, perf = result.rows
    assert (locust.tool, perf.tool, result.protocol) == ("locust", "perf_analyzer", protocol)
    assert perf.requests > 0 and perf.rps > 0 and locust.requests > 0
    assert 0 < perf.p50_ms <= perf.p95_ms <= perf.p99_ms
    # The ratio is the two measured rates, reported with its verdict (the 15% itself is measured in the
    # README's table, not asserted on a shared test machine).
    assert result.throughput_ratio == pytest.approx(locust.rps / perf.rps, rel=1e-3)
    assert f"{result.throughput_ratio:.2f}x" in result.verdict()
    saved = json.loads((tmp_path / "loadtest-compare" / "compare.json").read_text())
    assert saved["throughput_ratio"] == result.throughput_ratio and saved["tolerance"] == 0.15
    assert locust.failures == 0  # a fast-failing load generator would report a high rate


def test_runner_kills_the_whole_locust_tree_past_its_wall_clock_limit(triton, spec, tmp_path: Path):
    from triton_bundle.loadtest.runner import run_locust
    from triton_bundle.loadtest.stage import build_settings
    from triton_bundle.loadtest.workload import workload_for

    # The shape would run for a minute; the runner's limit stops it (master and both workers) first.
    # The limit leaves room for Locust's start (imports + forking workers took ~10 s on a busy 2-core
    # box): a SIGINT that lands while it is still spawning users can be lost, and real limits are the
    # run's duration plus startup and shutdown graces, never that short.
    settings = build_settings(
        spec, Overrides(duration_s=60, workers=2, max_requests=100_000), tmp_path, endpoint=_http(triton)
    )
    workload_for(spec).save(settings.workload_path)
    run = run_locust(settings, tmp_path, limit_s=25)
    assert run.timed_out and "killed" in run.summary.stop_reason and run.summary.requests > 0
    with pytest.raises(ProcessLookupError):
        os.killpg(run.pid, 0)  # nothing left in Locust's process group


def test_serve_flag_runs_against_its_own_local_triton(triton, cli, tmp_path: Path):
    result = cli(
        "loadtest", SPEC, "-w", tmp_path, "--serve", "--repository", triton.config.repository,
        "-u", 1, "-t", 2, "-n", 50,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "loadtest" / "report.json").read_text())
    url = report["result"]["settings"]["endpoint"]["url"]
    assert url != triton.http_url and report["result"]["client"]["requests"] == 50
