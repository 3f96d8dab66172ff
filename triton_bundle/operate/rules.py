"""Prometheus alerting rules for one served model, with thresholds taken from the spec's `loadtest.slo`.

Every rule is built here from the spec, never hand-copied: change an SLO and `triton-bundle ops generate`
moves the alert. The same groups are written as a Prometheus rule file (compose) and inside a
PrometheusRule (kube-prometheus-stack).

`for:` windows are long enough that one slow scrape or one burst does not page (rates over 5 minutes,
then held for 5-10 minutes); only "server down" pages after 2 minutes.

Other tasks add their own alerts by appending a function to ALERT_SOURCES (text generation will add
time-to-first-token and inter-token-latency rules there): each returns a RuleGroup or None.
"""

from __future__ import annotations

from collections.abc import Callable

import yaml
from pydantic import BaseModel, ConfigDict, Field

from triton_bundle.operate import metrics as m
from triton_bundle.spec import ModelSpec

RATE_WINDOW = "5m"
RUNBOOK = "https://github.com/triton-bundle/triton-bundle#operate"  # the README's Operate section


class Thresholds(BaseModel):
    """The numbers the alerts compare against, all derived from the spec."""

    model: str
    p95_ms: float | None
    p99_ms: float | None
    queue_ms: float | None
    failure_ratio: float
    gpu_memory_ratio: float
    job_regex: str

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> Thresholds:
        slo, operate = spec.loadtest.slo, spec.operate
        queue = slo.queue_ms
        if queue is None and slo.p95_ms is not None:
            queue = round(slo.p95_ms * operate.queue_share_of_p95, 3)
        return cls(
            model=spec.name,
            p95_ms=slo.p95_ms,
            p99_ms=slo.p99_ms,
            queue_ms=queue,
            failure_ratio=max(slo.max_error_rate, operate.min_failure_ratio),
            gpu_memory_ratio=operate.gpu_memory_ratio,
            job_regex=operate.scrape_job,
        )

    @property
    def entry(self) -> str:
        """Label matcher for the model clients call (the ensemble, or the only model)."""
        return f'model="{self.model}"'

    @property
    def steps(self) -> str:
        """Label matcher for the entry model and every step of its ensemble (<name>_tokenizer, ...)."""
        return f'model=~"{self.model}(_.+)?"'


class AlertRule(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    alert: str
    expr: str
    for_: str = Field(alias="for")
    labels: dict[str, str]
    annotations: dict[str, str]


class RuleGroup(BaseModel):
    name: str
    rules: list[AlertRule]


def _rule(name: str, expr: str, wait: str, severity: str, summary: str, description: str) -> AlertRule:
    return AlertRule(
        alert=name,
        expr=expr,
        for_=wait,
        labels={"severity": severity, "component": "triton"},
        annotations={"summary": summary, "description": description, "runbook_url": RUNBOOK},
    )


def queue_time_per_request_us(t: Thresholds, by: str = "instance") -> str:
    """Average time one request to the entry model spent queued, over all its steps (microseconds)."""
    queued = f"sum by ({by}) (rate({m.QUEUE_DURATION}{{{t.steps}}}[{RATE_WINDOW}]))"
    served = f"sum by ({by}) (rate({m.REQUEST_SUCCESS}{{{t.entry}}}[{RATE_WINDOW}]))"
    return f"{queued} / {served}"


def _availability(t: Thresholds) -> list[AlertRule]:
    job = f'job=~"{t.job_regex}"'
    return [
        _rule(
            "TritonDown",
            f"{m.PROMETHEUS_UP}{{{job}}} == 0",
            "2m",
            "page",
            "Triton {{ $labels.instance }} is not answering metrics scrapes",
            "Prometheus cannot scrape {{ $labels.instance }}: the server is down, restarting or unreachable.",
        ),
        _rule(
            "TritonModelNotReady",
            f"(max by (instance) ({m.PROMETHEUS_UP}{{{job}}}) == 1) unless on (instance) "
            f"count by (instance) ({m.REQUEST_SUCCESS}{{{t.entry}}})",
            "5m",
            "page",
            f"{t.model} is not loaded on {{{{ $labels.instance }}}}",
            f"Triton answers but exports no metrics for {t.model}: the model failed to load or was unloaded.",
        ),
        _rule(
            "TritonRestarted",
            f"(sum by (instance) (resets({m.REQUEST_SUCCESS}{{{t.entry}}}[15m])) > 0) or "
            f'(sum by (namespace, pod) (increase({m.KUBE_RESTARTS}{{container="triton"}}[15m])) > 0)',
            "0m",
            "warning",
            "Triton restarted on {{ $labels.instance }}{{ $labels.pod }}",
            "A counter reset or a container restart in the last 15 minutes: look for OOM kills and crashes.",
        ),
    ]


def _errors_and_latency(t: Thresholds) -> list[AlertRule]:
    failed = f"sum by (instance) (rate({m.REQUEST_FAILURE}{{{t.entry}}}[{RATE_WINDOW}]))"
    succeeded = f"sum by (instance) (rate({m.REQUEST_SUCCESS}{{{t.entry}}}[{RATE_WINDOW}]))"
    rules = [
        _rule(
            "TritonFailureRatioHigh",
            f"{failed} / ({succeeded} + {failed}) > {t.failure_ratio:g}",
            "5m",
            "page",
            f"{t.model}: {{{{ $value | humanizePercentage }}}} of requests fail on {{{{ $labels.instance }}}}",
            f"More than {t.failure_ratio:.2%} of requests to {t.model} failed over {RATE_WINDOW}.",
        )
    ]
    if t.queue_ms is not None:
        rules.append(
            _rule(
                "TritonQueueTimeHigh",
                f"{queue_time_per_request_us(t)} > {t.queue_ms * 1000:g}",
                "10m",
                "warning",
                f"{t.model}: requests wait {{{{ $value | humanize }}}}us in Triton's queues",
                f"Average queue time per request is over {t.queue_ms:g} ms: the replica is saturated "
                "(scale out, or raise instances / max batch).",
            )
        )
    for quantile, limit, severity in (("0.95", t.p95_ms, "warning"), ("0.99", t.p99_ms, "page")):
        if limit is None:
            continue
        label = f"p{round(float(quantile) * 100)}"
        rules.append(
            _rule(
                f"TritonLatency{label.upper()}High",
                f'max by (instance) ({m.REQUEST_SUMMARY}{{{t.entry},quantile="{quantile}"}}) / 1000 '
                f"> {limit:g}",
                "10m",
                severity,
                f"{t.model}: {label} latency {{{{ $value | humanize }}}}ms on {{{{ $labels.instance }}}}",
                f"Server-side {label} request latency is over the SLO's {limit:g} ms.",
            )
        )
    return rules


def _gpu(t: Thresholds) -> list[AlertRule]:
    return [
        _rule(
            "TritonGpuMemoryNearlyFull",
            f"max by (instance, gpu_uuid) ({m.GPU_MEMORY_USED} / {m.GPU_MEMORY_TOTAL}) > {t.gpu_memory_ratio:g}",
            "15m",
            "warning",
            "GPU {{ $labels.gpu_uuid }} on {{ $labels.instance }} is {{ $value | humanizePercentage }} full",
            f"GPU memory use above {t.gpu_memory_ratio:.0%}: the next model load or a larger batch can fail.",
        )
    ]


def _serving_groups(spec: ModelSpec) -> RuleGroup | None:
    t = Thresholds.from_spec(spec)
    return RuleGroup(name=f"triton-{spec.name}", rules=_availability(t) + _errors_and_latency(t) + _gpu(t))


# Each source returns one more group for the spec, or None when it does not apply to its task.
ALERT_SOURCES: list[Callable[[ModelSpec], RuleGroup | None]] = [_serving_groups]


def alert_groups(spec: ModelSpec) -> list[RuleGroup]:
    return [group for source in ALERT_SOURCES if (group := source(spec)) is not None]


def _groups_document(groups: list[RuleGroup]) -> dict:
    return {"groups": [g.model_dump(by_alias=True) for g in groups]}


def rules_file_text(groups: list[RuleGroup]) -> str:
    header = "# Generated by `triton-bundle ops generate` from the spec: edit the spec, not this file.\n"
    return header + yaml.safe_dump(_groups_document(groups), sort_keys=False, width=120)


def prometheus_rule_text(groups: list[RuleGroup], name: str, namespace: str) -> str:
    """The same groups as a kube-prometheus-stack PrometheusRule (its `release` label selects it)."""
    document = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "triton-bundle", "release": "kube-prometheus-stack"},
        },
        "spec": _groups_document(groups),
    }
    header = "# Generated by `triton-bundle ops generate` from the spec: edit the spec, not this file.\n"
    return header + yaml.safe_dump(document, sort_keys=False, width=120)
