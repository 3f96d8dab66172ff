"""The load test against the real demo deployment: fine-tuned MiniLM, tokenizer + ONNX model + postprocess
ensemble, served by the local Triton (session fixtures in conftest.py)."""

from __future__ import annotations

import pytest

from triton_bundle.loadtest.capacity import capacity_stage
from triton_bundle.loadtest.settings import Endpoint
from triton_bundle.loadtest.stage import Overrides, loadtest_stage
from triton_bundle.repository import contract
from triton_bundle.spec import SLOSpec

pytestmark = pytest.mark.slow


def _endpoint(server) -> Endpoint:
    return Endpoint(
        protocol="http", url=server.http_url, metrics_url=server.metrics_url, http_url=server.http_url
    )


def test_demo_gate_on_real_texts_shows_every_ensemble_step(demo_server, demo_spec, tmp_path):
    result = loadtest_stage(
        demo_spec,
        tmp_path,
        Overrides(users=2, duration_s=3, max_requests=300, request_batch_size=2),
        endpoint=_endpoint(demo_server),
    )
    assert result.client.requests > 0 and result.client.failures == 0
    assert result.passed == all(c.passed for c in result.gate.checks)
    assert result.length_profile is not None and result.length_profile.texts > 100
    steps = {m.model: m for m in result.server.models}
    name = demo_spec.name
    assert {name, contract.tokenizer_model(name), contract.tensor_model(name)} <= set(steps)
    # The ensemble's requests reach every step; the server's queue / compute split adds up the steps.
    assert steps[contract.tensor_model(name)].requests >= result.client.requests
    assert result.server.compute_ms is not None and result.server.compute_ms > 0
    assert (tmp_path / "loadtest" / "report.json").is_file()


def test_capacity_search_converges_on_the_demo_model(demo_server, demo_spec, tmp_path):
    # The SLO scales with this machine's single-user latency, so there is a boundary to find on any host.
    baseline = loadtest_stage(
        demo_spec,
        tmp_path,
        Overrides(users=1, duration_s=2, max_requests=200),
        out=tmp_path / "baseline",
        endpoint=_endpoint(demo_server),
        slo=SLOSpec(max_error_rate=0.0),
    )
    assert baseline.client.latency.p95_ms is not None
    slo = SLOSpec(p95_ms=4 * baseline.client.latency.p95_ms, max_error_rate=0.0)
    result = capacity_stage(
        demo_spec,
        tmp_path,
        mode="users",
        start=2,
        limit=16,
        max_steps=8,
        step_duration_s=2.0,
        overrides=Overrides(max_requests=2000),
        endpoint=_endpoint(demo_server),
        slo=slo,
    )
    assert result.converged, result.note
    assert len(result.steps) <= 8
    passed = [s.level for s in result.steps if s.passed]
    failed = [s.level for s in result.steps if not s.passed]
    if result.best is not None:
        assert max(passed) == result.best
    if result.lowest_failing is not None:
        assert min(failed) == result.lowest_failing
        assert result.best is None or result.lowest_failing - result.best <= 1
