"""Streaming load tests against a real local Triton serving a stand-in decoder with the generation contract.

`fake-gen` (tests/fixtures/generation_models) is a decoupled Python model that streams `max_tokens`
tokens, the first after FIRST_MS, then one every TOKEN_MS, each request on its own thread. The measured
TTFT / ITL must follow those delays over both protocols, concurrent streams must overlap (a blocking
client would serialise them), and the gate must fail on a missed TTFT SLO and on streams the server
refuses.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from triton_bundle.loadtest.cli import register
from triton_bundle.manifest import Manifest
from triton_bundle.serving.local_triton import LocalTriton, ServerConfig

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).parent / "fixtures"
SPEC = FIXTURES / "generation_spec" / "spec.yaml"
FIRST_MS, TOKEN_MS = 60, 15


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory):
    repo = tmp_path_factory.mktemp("generation_repo")
    shutil.copytree(FIXTURES / "generation_models" / "fake-gen", repo / "fake-gen")
    config = repo / "fake-gen" / "config.pbtxt"
    text = config.read_text().replace('string_value: "20"', f'string_value: "{FIRST_MS}"')
    config.write_text(text.replace('string_value: "5"', f'string_value: "{TOKEN_MS}"'))
    with LocalTriton(ServerConfig(repository=repo, log_file=repo.parent / "triton.log")) as server:
        yield server


@pytest.fixture()
def cli():
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_streams_measure_ttft_itl_and_tokens(triton, cli, tmp_path: Path, protocol: str):
    url = triton.http_url if protocol == "http" else triton.grpc_url
    result = cli(
        "loadtest", SPEC, "-w", tmp_path, "--protocol", protocol, "--url", url,
        "--http-url", triton.http_url, "--metrics-url", triton.metrics_url, "-u", 3, "-t", 2, "-n", 60,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "streamed generation" in result.output and "all SLOs met" in result.output

    out = tmp_path / "loadtest"
    report = _report(out)
    client = report["result"]["client"]
    gen = client["generation"]
    assert client["failures"] == 0 and gen["streams"] == client["requests"] > 0
    assert gen["tokens"] == 8 * gen["streams"], "every stream delivers max_tokens tokens, one per response"
    # The stand-in's delays, seen from the client: the first token after FIRST_MS, then TOKEN_MS apart.
    assert FIRST_MS <= gen["ttft"]["p50_ms"] < FIRST_MS + 150
    assert TOKEN_MS * 0.8 <= gen["itl"]["p50_ms"] < TOKEN_MS + 40
    assert gen["itl"]["samples"] == 7 * gen["streams"]
    # Three users stream at once: all streams together deliver more than any single stream does.
    assert gen["tokens_per_s"] > 1.8 * gen["stream_tokens_per_s_p50"]
    assert len(gen["user_tokens_per_s"]) == 3 and all(r > 0 for r in gen["user_tokens_per_s"].values())
    assert report["result"]["settings"]["generation"]["max_tokens"] == 8

    summary = (out / "summary.md").read_text()
    assert "## Generation (streamed tokens)" in summary and "p95 inter-token latency" in summary
    png = (out / "generation.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    record = Manifest.load(tmp_path, "fake-gen").require("loadtest", "triton-bundle loadtest")
    assert record.metrics["ttft_p95_ms"] == gen["ttft"]["p95_ms"] and record.metrics["tokens_per_s"] > 0


def test_missed_ttft_slo_exits_1_and_names_it(triton, cli, tmp_path: Path):
    result = cli(
        "loadtest", SPEC, "-w", tmp_path, "--url", triton.http_url, "-u", 2, "-t", 2, "-n", 20,
        "--ttft-p95-ms", 10, "--max-tokens", 3,
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "FAILED: p95 time to first token" in result.output
    report = _report(tmp_path / "loadtest")
    assert report["failed_slos"] == ["ttft_p95_ms"]
    check = next(c for c in report["result"]["gate"]["checks"] if c["name"] == "ttft_p95_ms")
    assert check["measured"] >= FIRST_MS and check["margin"] == pytest.approx(10 - check["measured"])
    assert report["result"]["client"]["generation"]["tokens"] == 3 * report["result"]["client"]["requests"]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_refused_streams_are_failures_not_tokens(triton, cli, tmp_path: Path, protocol: str):
    url = triton.http_url if protocol == "http" else triton.grpc_url
    result = cli(
        "loadtest", SPEC, "-w", tmp_path, "--protocol", protocol, "--url", url, "--http-url", triton.http_url,
        "-u", 1, "-t", 2, "-n", 5, "--max-tokens", 1000,
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    report = _report(tmp_path / "loadtest")
    client = report["result"]["client"]
    assert client["requests"] > 0 and client["failures"] == client["requests"]
    assert client["generation"]["streams"] == 0 and client["generation"]["tokens"] == 0
    assert "max_tokens" in client["errors"][0]["error"], "the server's reason reaches the report"
    failed = set(report["failed_slos"])
    assert {"max_error_rate", "ttft_p95_ms", "min_tokens_per_s"} <= failed, "unmeasured SLOs fail too"


def test_streams_against_the_served_decoder(textgen_server, cli, tmp_path: Path):
    """The real thing: the spec's decoupled decoder (tiny GPT-2 and Llama) under two streaming users."""
    spec, _, server = textgen_server
    spec_file = tmp_path / "spec.yaml"
    shutil.copy(SPEC.parent / "prompts.jsonl", tmp_path / "prompts.jsonl")
    spec_file.write_text(
        SPEC.read_text()
        .replace("name: fake-gen", f"name: {spec.name}")
        .replace("max_tokens: 8", "max_tokens: 6")
    )
    result = cli(
        "loadtest", spec_file, "-w", tmp_path, "--url", server.http_url, "--metrics-url", server.metrics_url,
        "-u", 2, "-t", 2, "-n", 40,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    client = _report(tmp_path / "loadtest")["result"]["client"]
    gen = client["generation"]
    assert client["failures"] == 0 and gen["streams"] == client["requests"] > 0
    # A stream may end early at the end-of-text token, never past max_tokens.
    assert gen["streams"] <= gen["tokens"] <= 6 * gen["streams"]
    assert gen["ttft"]["p50_ms"] > 0 and len(gen["user_tokens_per_s"]) == 2
