"""A Grafana dashboard for one served model: throughput, latency percentiles against the SLO, queue vs
compute time per ensemble step, batch sizes, pending requests, CPU and GPU use.

Panels are data (Panel) turned into Grafana's JSON in one place. Other tasks add rows by appending a
function to PANEL_SOURCES (text generation will add time-to-first-token / inter-token-latency panels
there); each returns a list of panels for the spec, empty when it does not apply.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import yaml

from triton_bundle.operate import metrics as m
from triton_bundle.operate.rules import Thresholds
from triton_bundle.spec import ModelSpec

RATE = "$__rate_interval"  # Grafana picks a window of at least 4 scrape intervals
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    targets: tuple[Target, ...]
    stacked: bool = False
    thresholds: tuple[float, ...] = ()  # drawn as lines: the SLO
    description: str = ""
    extra: dict = field(default_factory=dict)


def _per_request(counter: str, t: Thresholds, by: str = "model") -> str:
    """Average per request (ms) of a cumulative microsecond counter, per ensemble step."""
    return (
        f"sum by ({by}) (rate({counter}{{{t.steps}}}[{RATE}])) / "
        f"sum by ({by}) (rate({m.REQUEST_SUCCESS}{{{t.steps}}}[{RATE}])) / 1000"
    )


def _traffic(t: Thresholds) -> list[Panel]:
    return [
        Panel(
            "Throughput (requests/s)",
            "reqps",
            (
                Target(f"sum by (model) (rate({m.REQUEST_SUCCESS}{{{t.steps}}}[{RATE}]))", "{{model}} ok"),
                Target(
                    f"sum by (model) (rate({m.REQUEST_FAILURE}{{{t.steps}}}[{RATE}]))", "{{model}} failed"
                ),
            ),
            description="Requests answered per second by the entry model and each ensemble step.",
        ),
        Panel(
            f"{t.model} latency percentiles (server side)",
            "ms",
            tuple(
                Target(f'max({m.REQUEST_SUMMARY}{{{t.entry},quantile="{q}"}}) / 1000', f"p{round(q * 100)}")
                for q in m.SUMMARY_QUANTILES
            ),
            thresholds=tuple(v for v in (t.p95_ms, t.p99_ms) if v is not None),
            description="Triton's request-duration summary; the lines are the spec's p95 / p99 SLOs.",
        ),
    ]


def _steps(t: Thresholds) -> list[Panel]:
    return [
        Panel(
            "Queue vs compute per request, per ensemble step",
            "ms",
            (
                Target(_per_request(m.QUEUE_DURATION, t), "{{model}} queue"),
                Target(_per_request(m.COMPUTE_INFER_DURATION, t), "{{model}} compute"),
                Target(_per_request(m.COMPUTE_INPUT_DURATION, t), "{{model}} input"),
                Target(_per_request(m.COMPUTE_OUTPUT_DURATION, t), "{{model}} output"),
            ),
            stacked=True,
            thresholds=(t.queue_ms,) if t.queue_ms is not None else (),
            description="Where a request's time goes in each step; queue growing first means saturation.",
        ),
        Panel(
            "Average batch size per step",
            "short",
            (
                Target(
                    f"sum by (model) (rate({m.INFERENCE_COUNT}{{{t.steps}}}[{RATE}])) / "
                    f"sum by (model) (rate({m.EXEC_COUNT}{{{t.steps}}}[{RATE}]))",
                    "{{model}}",
                ),
            ),
            description="Inferences per model execution: what dynamic batching achieves.",
        ),
        Panel(
            "Pending requests",
            "short",
            (Target(f"sum by (model) ({m.PENDING_REQUESTS}{{{t.steps}}})", "{{model}}"),),
        ),
    ]


def _hardware(t: Thresholds) -> list[Panel]:
    return [
        Panel(
            "CPU utilisation",
            "percentunit",
            (Target(f"avg by (instance) ({m.CPU_UTILIZATION})", "{{instance}}"),),
        ),
        Panel(
            "GPU utilisation",
            "percentunit",
            (Target(f"avg by (instance, gpu_uuid) ({m.GPU_UTILIZATION})", "{{gpu_uuid}}"),),
        ),
        Panel(
            "GPU memory used",
            "percentunit",
            (
                Target(
                    f"max by (instance, gpu_uuid) ({m.GPU_MEMORY_USED} / {m.GPU_MEMORY_TOTAL})",
                    "{{gpu_uuid}}",
                ),
            ),
            thresholds=(t.gpu_memory_ratio,),
        ),
    ]


def _serving_panels(spec: ModelSpec) -> list[Panel]:
    t = Thresholds.from_spec(spec)
    return _traffic(t) + _steps(t) + _hardware(t)


PANEL_SOURCES: list[Callable[[ModelSpec], list[Panel]]] = [_serving_panels]


def panels(spec: ModelSpec) -> list[Panel]:
    return [panel for source in PANEL_SOURCES for panel in source(spec)]


def _panel_json(panel: Panel, index: int) -> dict:
    steps = [{"color": "green", "value": None}] + [{"color": "red", "value": v} for v in panel.thresholds]
    return {
        "id": index + 1,
        "type": "timeseries",
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": 12, "x": 12 * (index % 2), "y": 8 * (index // 2)},
        "fieldConfig": {
            "defaults": {
                "unit": panel.unit,
                "custom": {
                    "stacking": {"mode": "normal" if panel.stacked else "none"},
                    "thresholdsStyle": {"mode": "line" if panel.thresholds else "off"},
                },
                "thresholds": {"mode": "absolute", "steps": steps},
            },
            "overrides": [],
        },
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DATASOURCE, "expr": t.expr, "legendFormat": t.legend}
            for i, t in enumerate(panel.targets)
        ],
        **panel.extra,
    }


def dashboard(spec: ModelSpec) -> dict:
    """Grafana's dashboard JSON (schema 39), with a Prometheus data source variable."""
    return {
        "uid": f"triton-{spec.name}"[:40],
        "title": f"Triton: {spec.name}",
        "tags": ["triton-bundle", "triton"],
        "timezone": "browser",
        "schemaVersion": 39,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"}
            ]
        },
        "panels": [_panel_json(p, i) for i, p in enumerate(panels(spec))],
    }


def dashboard_text(spec: ModelSpec) -> str:
    return json.dumps(dashboard(spec), indent=2) + "\n"


def configmap_text(spec: ModelSpec, namespace: str) -> str:
    """A ConfigMap the kube-prometheus-stack Grafana sidecar loads (label grafana_dashboard=1)."""
    document = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"grafana-dashboard-{spec.name}",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "triton-bundle", "grafana_dashboard": "1"},
        },
        "data": {f"triton-{spec.name}.json": dashboard_text(spec)},
    }
    header = "# Generated by `triton-bundle ops generate` from the spec: edit the spec, not this file.\n"
    return header + yaml.safe_dump(document, sort_keys=False, width=120)
