"""The generated dashboard and alert queries name only metrics a real Triton exports.

A real local Triton (the pytriton wheel's 2.51, started with the bundle's flags: latency summaries on)
serves the load-test stand-in ensemble; after a few requests its /metrics is scraped and every metric a
panel or an alert selects must be in that list, or in the explicit list of GPU metrics (exported only
where a GPU is visible) and non-Triton metrics (`up`, kube-state-metrics' restart counter).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from triton_bundle.operate import dashboard, metrics, rules
from triton_bundle.serving.local_triton import LocalTriton, ServerConfig
from triton_bundle.spec import ModelSpec, load_spec

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
DEMO_SPEC = ROOT / "examples" / "minilm-intent" / "spec.yaml"
ALLOWED_ELSEWHERE = metrics.GPU_METRICS | metrics.EXTERNAL_METRICS


def _tensor_spec() -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "name": "tiny-gan",
            "task": "tensor",
            "source": {"kind": "torch-module", "module": "g.py:G", "weights": "g.safetensors"},
            "inputs": [{"name": "latent", "dtype": "float32", "shape": ["batch", 16]}],
            "data": {"eval": "latents.npz"},
            "loadtest": {"slo": {"p95_ms": 40, "p99_ms": 90}},
        }
    )


SPECS = {"text-classification": lambda: load_spec(DEMO_SPEC), "tensor": _tensor_spec}


@pytest.fixture(scope="module")
def exported_metrics(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """Metric names of a real Triton serving an ensemble (fake-intent -> fake-intent_model) after traffic."""
    import tritonclient.http as httpclient

    repo = tmp_path_factory.mktemp("metrics_repo")
    for name in ("fake-intent", "fake-intent_model"):
        shutil.copytree(FIXTURES / "loadtest_models" / name, repo / name)
        (repo / name / "1").mkdir()
    shutil.copy(FIXTURES / "loadtest_models" / "model.py", repo / "fake-intent_model" / "1" / "model.py")
    with LocalTriton(ServerConfig(repository=repo, log_file=repo.parent / "triton.log")) as server:
        client = httpclient.InferenceServerClient(server.http_url)
        text = httpclient.InferInput("TEXT", [1, 1], "BYTES")
        text.set_data_from_numpy(np.array([[b"where is my order"]], dtype=object))
        for _ in range(5):
            client.infer("fake-intent", [text])
        client.close()
        return metrics.scrape_metric_names(server.metrics_url)


@pytest.mark.slow
def test_the_server_exports_latency_summaries(exported_metrics: set[str]) -> None:
    # The bundle starts Triton with summary_latencies=true: the p95 / p99 alerts and panels need them.
    assert {metrics.REQUEST_SUMMARY, metrics.QUEUE_SUMMARY} <= exported_metrics
    assert not exported_metrics & metrics.GPU_METRICS  # no GPU here: why GPU metrics are allow-listed


@pytest.mark.slow
@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_every_query_names_an_exported_metric(spec_name: str, exported_metrics: set[str]) -> None:
    spec = SPECS[spec_name]()
    queries = [t.expr for p in dashboard.panels(spec) for t in p.targets]
    queries += [r.expr for g in rules.alert_groups(spec) for r in g.rules]
    unknown = {}
    for query in queries:
        names = metrics.metric_names_in(query)
        assert names, f"no metric found in {query}"
        if missing := names - exported_metrics - ALLOWED_ELSEWHERE:
            unknown[query] = sorted(missing)
    assert not unknown, f"queries name metrics Triton does not export: {unknown}"


def test_metric_names_are_read_from_promql() -> None:
    expr = (
        'sum by (model) (rate(nv_inference_queue_duration_us{model=~"a(_.+)?",quantile="0.95"}[$__rate_interval]))'
        " / clamp_min(sum by (model) (rate(nv_inference_request_success{model='a'}[5m])), 1) / 1000 > 2"
    )
    assert metrics.metric_names_in(expr) == {"nv_inference_queue_duration_us", "nv_inference_request_success"}
    # A typo is a name the server does not export: the check above would catch it.
    assert metrics.metric_names_in("rate(nv_inference_requets_success[1m])") == {
        "nv_inference_requets_success"
    }


@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_dashboard_has_the_panels_a_platform_team_asks_for(spec_name: str) -> None:
    spec = SPECS[spec_name]()
    board = json.loads(dashboard.dashboard_text(spec))
    titles = " | ".join(p["title"] for p in board["panels"]).lower()
    for wanted in ("throughput", "latency percentiles", "queue vs compute", "batch size", "gpu utilisation"):
        assert wanted in titles, wanted
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    assert {(p["gridPos"]["x"], p["gridPos"]["y"]) for p in board["panels"]}.__len__() == len(board["panels"])
    assert board["templating"]["list"][0]["name"] == "datasource"
    for panel in board["panels"]:
        assert panel["targets"] and all(
            t["expr"] and t["datasource"]["uid"] == "${datasource}" for t in panel["targets"]
        )
    # The latency panel draws the spec's SLOs as threshold lines.
    (latency,) = [p for p in board["panels"] if "latency percentiles" in p["title"]]
    steps = [s["value"] for s in latency["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]]
    assert steps == [spec.loadtest.slo.p95_ms, spec.loadtest.slo.p99_ms]
    # Per ensemble step: the queries group by model over the entry model and its steps.
    (split,) = [p for p in board["panels"] if "queue vs compute" in p["title"].lower()]
    assert all(
        f'model=~"{spec.name}(_.+)?"' in t["expr"] and "by (model)" in t["expr"] for t in split["targets"]
    )


def test_new_tasks_add_panels_and_alerts_through_the_registries(monkeypatch: pytest.MonkeyPatch) -> None:
    # How text generation will add its TTFT panel and alert: one function appended to each registry.
    spec = load_spec(DEMO_SPEC)
    ttft = dashboard.Panel("Time to first token", "ms", (dashboard.Target("max(nv_ttft)", "ttft"),))
    monkeypatch.setattr(dashboard, "PANEL_SOURCES", [*dashboard.PANEL_SOURCES, lambda s: [ttft]])
    group = rules.RuleGroup(name="generation", rules=[])
    monkeypatch.setattr(rules, "ALERT_SOURCES", [*rules.ALERT_SOURCES, lambda s: group])
    assert dashboard.dashboard(spec)["panels"][-1]["title"] == "Time to first token"
    assert [g.name for g in rules.alert_groups(spec)] == [f"triton-{spec.name}", "generation"]
