"""Triton's Prometheus metrics the rules and the dashboard use, and how to list what a server exports.

Names are those of Triton 2.51 (the pytriton wheel) and the NVIDIA containers; a test scrapes a real
local Triton and checks every query names one of them. GPU metrics are only exported where a GPU is
visible, so they are checked against GPU_METRICS instead.
"""

from __future__ import annotations

import re
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

# Per model (labels: model, version). Durations are cumulative microseconds.
REQUEST_SUCCESS = "nv_inference_request_success"
REQUEST_FAILURE = "nv_inference_request_failure"
INFERENCE_COUNT = "nv_inference_count"
EXEC_COUNT = "nv_inference_exec_count"
REQUEST_DURATION = "nv_inference_request_duration_us"
QUEUE_DURATION = "nv_inference_queue_duration_us"
COMPUTE_INPUT_DURATION = "nv_inference_compute_input_duration_us"
COMPUTE_INFER_DURATION = "nv_inference_compute_infer_duration_us"
COMPUTE_OUTPUT_DURATION = "nv_inference_compute_output_duration_us"
PENDING_REQUESTS = "nv_inference_pending_request_count"
# Summaries (--metrics-config summary_latencies=true): label quantile="0.5" ... "0.99".
REQUEST_SUMMARY = "nv_inference_request_summary_us"
QUEUE_SUMMARY = "nv_inference_queue_summary_us"
# Server-wide.
CPU_UTILIZATION = "nv_cpu_utilization"
CPU_MEMORY_USED = "nv_cpu_memory_used_bytes"
# Per GPU (label gpu_uuid); exported only with a GPU and --allow-gpu-metrics=true (the default).
GPU_UTILIZATION = "nv_gpu_utilization"
GPU_MEMORY_USED = "nv_gpu_memory_used_bytes"
GPU_MEMORY_TOTAL = "nv_gpu_memory_total_bytes"
GPU_POWER_USAGE = "nv_gpu_power_usage"
GPU_METRICS = frozenset({GPU_UTILIZATION, GPU_MEMORY_USED, GPU_MEMORY_TOTAL, GPU_POWER_USAGE})
# Not Triton's: Prometheus' own scrape health, and kube-state-metrics' restart counter (Kubernetes only).
PROMETHEUS_UP = "up"
KUBE_RESTARTS = "kube_pod_container_status_restarts_total"
EXTERNAL_METRICS = frozenset({PROMETHEUS_UP, KUBE_RESTARTS})

# The summary quantiles Triton is started with (entrypoint and local server): p50 / p95 / p99.
SUMMARY_QUANTILES = (0.5, 0.95, 0.99)
METRICS_CONFIG_FLAGS = (
    "--metrics-config=summary_latencies=true",
    "--metrics-config=summary_quantiles=0.5:0.05,0.95:0.005,0.99:0.001",
)

_PROMQL_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"})
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names_in(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (labels, functions, keywords and numbers left out)."""
    text = re.sub(r"\"[^\"]*\"|'[^']*'", "", expr)  # string literals (label values)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b\d[\d.e+-]*\b", "", text)  # numbers (1e-9 would read as an identifier "e")
    names = set()
    for match in _IDENTIFIER.finditer(text):
        is_function = re.match(r"\s*\(", text[match.end() :]) is not None
        if not is_function and match.group().lower() not in _PROMQL_KEYWORDS:
            names.add(match.group())
    return names


def scrape_metric_names(metrics_url: str, timeout_s: float = 5.0) -> set[str]:
    """The metric family names a Triton /metrics endpoint exports now (summaries' _sum/_count included)."""
    url = metrics_url if "://" in metrics_url else f"http://{metrics_url}"
    url = url if url.rstrip("/").endswith("/metrics") else url.rstrip("/") + "/metrics"
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        text = response.read().decode("utf-8")
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names
