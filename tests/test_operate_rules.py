"""The generated alerting rules and adapter rules, checked and unit-tested with Prometheus' promtool.

Synthetic series are built from the spec's thresholds (x2 must fire, x0.5 must not), so the tests follow
the SLOs instead of repeating them. Two specs: the demo text classifier and a tensor model with its own
SLOs. promtool comes from Debian's `prometheus` package (`make install-system`).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from triton_bundle.operate import adapter, rules
from triton_bundle.operate.stage import ADAPTER_VALUES, PROMETHEUS_RULE, RULES_FILE, generate_ops, ops_files
from triton_bundle.spec import ModelSpec, load_spec

ROOT = Path(__file__).resolve().parents[1]
DEMO_SPEC = ROOT / "examples" / "minilm-intent" / "spec.yaml"
HPA = ROOT / "deploy" / "serving" / "triton" / "hpa.yaml"
MINUTES = 40  # length of every synthetic series, one sample a minute


def _tensor_spec() -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "name": "tiny-gan",
            "task": "tensor",
            "source": {"kind": "torch-module", "module": "g.py:G", "weights": "g.safetensors"},
            "inputs": [{"name": "latent", "dtype": "float32", "shape": ["batch", 16]}],
            "data": {"eval": "latents.npz"},
            "loadtest": {"slo": {"p95_ms": 40, "p99_ms": 90, "max_error_rate": 0.05, "queue_ms": 5}},
            "operate": {"gpu_memory_ratio": 0.8},
        }
    )


SPECS = {"text-classification": lambda: load_spec(DEMO_SPEC), "tensor": _tensor_spec}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip(
            "promtool is not installed: `make install-system` (apt-get install prometheus) puts it there"
        )
    return found


@pytest.fixture(params=sorted(SPECS))
def spec(request: pytest.FixtureRequest) -> ModelSpec:
    return SPECS[request.param]()


def _promtool(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def _series(metric: str, labels: dict[str, str], values: str) -> dict[str, str]:
    body = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{body}}}", "values": values}


def _ramp(per_minute: float, minutes: int = MINUTES) -> str:
    return f"0+{per_minute:g}x{minutes}"


def _input_series(t: rules.Thresholds) -> list[dict[str, str]]:
    """Instances: ok (everything within the SLOs), hot (every threshold crossed x2), blip (queue over the
    threshold for two minutes only), down, empty (up but the model not loaded), restarted."""
    series: list[dict[str, str]] = []
    requests = 600.0  # per minute: 10 req/s
    for instance, factor in (("ok", 0.5), ("hot", 2.0)):
        entry = {"job": "triton", "instance": instance, "model": t.model, "version": "1"}
        step = {**entry, "model": f"{t.model}_model"}
        failed = requests * min(t.failure_ratio * factor, 0.9)
        series += [
            _series("up", {"job": "triton", "instance": instance}, f"1x{MINUTES}"),
            _series("nv_inference_request_success", entry, _ramp(requests - failed)),
            _series("nv_inference_request_failure", {**entry, "reason": "BACKEND"}, _ramp(failed)),
            _series("nv_inference_request_success", step, _ramp(requests - failed)),
            # The ensemble itself does not queue; its steps do: the alert must add them up.
            _series("nv_inference_queue_duration_us", entry, _ramp(0)),
            _series(
                "nv_inference_queue_duration_us",
                step,
                _ramp((requests - failed) * t.queue_ms * 1000 * factor),
            ),
            _series(
                "nv_gpu_memory_total_bytes", {"instance": instance, "gpu_uuid": "GPU-0"}, f"80e9x{MINUTES}"
            ),
            _series(
                "nv_gpu_memory_used_bytes",
                {"instance": instance, "gpu_uuid": "GPU-0"},
                f"{80e9 * min(t.gpu_memory_ratio * factor, 0.99):g}x{MINUTES}",
            ),
        ]
        for quantile, limit in (("0.95", t.p95_ms), ("0.99", t.p99_ms)):
            series.append(
                _series(
                    "nv_inference_request_summary_us",
                    {**entry, "quantile": quantile},
                    f"{limit * 1000 * factor:g}x{MINUTES}",
                )
            )
    blip = {"job": "triton", "instance": "blip", "model": t.model, "version": "1"}
    burst = t.queue_ms * 1000 * 600 * 4
    series += [
        _series("nv_inference_request_success", blip, _ramp(600)),
        _series("nv_inference_queue_duration_us", blip, f"0+0x20 0+{burst:g}x2 {burst * 2:g}+0x17"),
        _series("up", {"job": "triton", "instance": "down"}, f"0x{MINUTES}"),
        _series("up", {"job": "triton", "instance": "empty"}, f"1x{MINUTES}"),
        # A server restart: the counter drops to zero at minute 20; a container restart in Kubernetes.
        _series(
            "nv_inference_request_success",
            {"job": "triton", "instance": "restarted", "model": t.model, "version": "1"},
            "0+600x19 0+600x20",
        ),
        _series(
            "kube_pod_container_status_restarts_total",
            {"namespace": "triton-bundle", "pod": "triton-abc", "container": "triton"},
            "0x19 1x20",
        ),
    ]
    return series


def _expected(t: rules.Thresholds) -> dict[str, list[dict[str, str]]]:
    """alertname -> the label sets that must be firing at minute 30 (and nothing else)."""
    severity = {r.alert: r.labels["severity"] for g in rules.alert_groups(_spec_of(t)) for r in g.rules}

    def at(alert: str, **labels: str) -> dict[str, str]:
        return {"severity": severity[alert], "component": "triton", **labels}

    return {
        "TritonDown": [at("TritonDown", job="triton", instance="down")],
        "TritonModelNotReady": [at("TritonModelNotReady", instance="empty")],
        "TritonFailureRatioHigh": [at("TritonFailureRatioHigh", instance="hot")],
        "TritonQueueTimeHigh": [at("TritonQueueTimeHigh", instance="hot")],
        "TritonLatencyP95High": [at("TritonLatencyP95High", instance="hot")],
        "TritonLatencyP99High": [at("TritonLatencyP99High", instance="hot")],
        "TritonGpuMemoryNearlyFull": [at("TritonGpuMemoryNearlyFull", instance="hot", gpu_uuid="GPU-0")],
        "TritonRestarted": [
            at("TritonRestarted", instance="restarted"),
            at("TritonRestarted", namespace="triton-bundle", pod="triton-abc"),
        ],
    }


_SPEC_BY_MODEL: dict[str, ModelSpec] = {}


def _spec_of(t: rules.Thresholds) -> ModelSpec:
    return _SPEC_BY_MODEL[t.model]


def _rules_without_annotations(spec: ModelSpec) -> str:
    # promtool compares annotations too; they hold $value templates, checked by `check rules` instead.
    groups = rules.alert_groups(spec)
    for group in groups:
        for rule in group.rules:
            rule.annotations = {}
    return rules.rules_file_text(groups)


def test_generated_rules_pass_promtool_check(spec: ModelSpec, promtool: str, tmp_path: Path) -> None:
    result = generate_ops(spec, tmp_path / "work", out=tmp_path / "out")
    checked = _promtool(promtool, "check", "rules", str(result.files[RULES_FILE]), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(result.alerts)} rules found" in checked.stdout
    # The PrometheusRule carries exactly the same groups.
    custom = yaml.safe_load(result.files[PROMETHEUS_RULE].read_text())
    plain = yaml.safe_load(result.files[RULES_FILE].read_text())
    assert custom["kind"] == "PrometheusRule" and custom["spec"] == plain


def test_alerts_fire_on_breaches_and_stay_quiet_otherwise(
    spec: ModelSpec, promtool: str, tmp_path: Path
) -> None:
    t = rules.Thresholds.from_spec(spec)
    _SPEC_BY_MODEL[t.model] = spec
    (tmp_path / "alerts.rules.yml").write_text(_rules_without_annotations(spec))
    expected = _expected(t)
    assert set(expected) == {r.alert for g in rules.alert_groups(spec) for r in g.rules}
    cases = [
        # One minute in, nothing has been wrong for long enough to page (every `for:` is >= 2m).
        {"eval_time": "1m", "alertname": name, "exp_alerts": []}
        for name in expected
        if name != "TritonRestarted"
    ] + [
        {"eval_time": "30m", "alertname": name, "exp_alerts": [{"exp_labels": labels} for labels in firing]}
        for name, firing in expected.items()
    ]
    # The restart is forgotten once it leaves the 15-minute window.
    cases.append({"eval_time": "39m", "alertname": "TritonRestarted", "exp_alerts": []})
    test = {
        "rule_files": ["alerts.rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": _input_series(t), "alert_rule_test": cases}],
    }
    (tmp_path / "alerts.test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
    result = _promtool(promtool, "test", "rules", "alerts.test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_breach_shorter_than_the_for_window_does_not_page(promtool: str, tmp_path: Path) -> None:
    # The "blip" instance's queue is 4x over the threshold for two minutes (minutes 20-22) only.
    spec = load_spec(DEMO_SPEC)
    t = rules.Thresholds.from_spec(spec)
    (tmp_path / "alerts.rules.yml").write_text(_rules_without_annotations(spec))
    series = [s for s in _input_series(t) if 'instance="blip"' in s["series"]]
    cases = [
        {"eval_time": f"{m}m", "alertname": "TritonQueueTimeHigh", "exp_alerts": []} for m in (21, 25, 30, 39)
    ]
    test = {
        "rule_files": ["alerts.rules.yml"],
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": cases}],
    }
    (tmp_path / "blip.test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
    result = _promtool(promtool, "test", "rules", "blip.test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_thresholds_come_from_the_spec() -> None:
    spec = _tensor_spec()
    t = rules.Thresholds.from_spec(spec)
    assert (t.p95_ms, t.p99_ms, t.queue_ms, t.failure_ratio, t.gpu_memory_ratio) == (40, 90, 5, 0.05, 0.8)
    text = rules.rules_file_text(rules.alert_groups(spec))
    assert "> 40\n" in text and "> 90\n" in text and "> 5000\n" in text and "> 0.05\n" in text
    # Without queue_ms the queue alert takes a share of p95; with no error budget, the floor applies.
    demo = load_spec(DEMO_SPEC)
    demo_t = rules.Thresholds.from_spec(demo)
    assert demo_t.queue_ms == demo.loadtest.slo.p95_ms * demo.operate.queue_share_of_p95
    assert demo_t.failure_ratio == demo.operate.min_failure_ratio
    demo.loadtest.slo.p99_ms = None
    assert "TritonLatencyP99High" not in {r.alert for g in rules.alert_groups(demo) for r in g.rules}


# ------------------------------------------------------------------------------------ autoscaling


def _adapter_query(spec: ModelSpec) -> str:
    # What prometheus-adapter sends for `kubectl get --raw .../pods/*/triton_queue_time_per_request_us`.
    query = adapter.queue_metrics_query(rules.Thresholds.from_spec(spec))
    return query.replace("<<.LabelMatchers>>", 'namespace="triton-bundle",pod=~"triton-a|triton-b"').replace(
        "<<.GroupBy>>", "pod"
    )


@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_adapter_query_yields_queue_time_per_request(spec_name: str, promtool: str, tmp_path: Path) -> None:
    spec = SPECS[spec_name]()
    name = spec.name
    pod_a = {"namespace": "triton-bundle", "pod": "triton-a", "version": "1"}
    pod_b = {**pod_a, "pod": "triton-b"}
    series = [
        # Pod a: 10 req/s, each queued 5 ms in the tokenizer and 15 ms in the model: 20,000 us a request.
        _series("nv_inference_request_success", {**pod_a, "model": name}, _ramp(600)),
        _series("nv_inference_request_success", {**pod_a, "model": f"{name}_model"}, _ramp(600)),
        _series("nv_inference_queue_duration_us", {**pod_a, "model": f"{name}_tokenizer"}, _ramp(600 * 5000)),
        _series("nv_inference_queue_duration_us", {**pod_a, "model": f"{name}_model"}, _ramp(600 * 15000)),
        # Another model on the same pod does not count.
        _series("nv_inference_queue_duration_us", {**pod_a, "model": "other"}, _ramp(600 * 99000)),
        # Pod b is idle: 0, not NaN (the adapter would drop NaN and the HPA would see no metric).
        _series("nv_inference_request_success", {**pod_b, "model": name}, f"5x{MINUTES}"),
        _series("nv_inference_queue_duration_us", {**pod_b, "model": f"{name}_model"}, f"7x{MINUTES}"),
    ]
    test = {
        "rule_files": [],
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": _adapter_query(spec),
                        "eval_time": "20m",
                        "exp_samples": [
                            {"labels": '{pod="triton-a"}', "value": 20000},
                            {"labels": '{pod="triton-b"}', "value": 0},
                        ],
                    }
                ],
            }
        ],
    }
    (tmp_path / "adapter.test.yml").write_text(yaml.safe_dump(test, sort_keys=False))
    result = _promtool(promtool, "test", "rules", "adapter.test.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hpa_metric_is_served_by_the_adapter_and_scales_before_the_alert() -> None:
    hpa = yaml.safe_load(HPA.read_text())
    targets = {
        m["pods"]["metric"]["name"]: m["pods"]["target"]["averageValue"] for m in hpa["spec"]["metrics"]
    }
    values = yaml.safe_load((ROOT / ADAPTER_VALUES).read_text())
    assert set(targets) <= {rule["name"]["as"] for rule in values["rules"]["custom"]}
    queue_target_us = float(targets[adapter.QUEUE_METRIC])
    assert queue_target_us < rules.Thresholds.from_spec(load_spec(DEMO_SPEC)).queue_ms * 1000


def test_committed_files_are_generated_from_the_demo_spec() -> None:
    # docker/ and deploy/ carry `triton-bundle ops generate examples/minilm-intent/spec.yaml --out . -f`.
    stale = [str(p) for p, text in ops_files(load_spec(DEMO_SPEC)).items() if (ROOT / p).read_text() != text]
    assert not stale, (
        f"regenerate with: triton-bundle ops generate {DEMO_SPEC.relative_to(ROOT)} --out . -f: {stale}"
    )


def test_cli_writes_once_and_refuses_to_overwrite_without_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from triton_bundle.cli import main
    from triton_bundle.manifest import Manifest

    def run(*extra: str) -> tuple[int, str]:
        argv = ["triton-bundle", "ops", "generate", str(DEMO_SPEC), "--out", str(tmp_path / "out")]
        monkeypatch.setattr(sys, "argv", [*argv, "--workdir", str(tmp_path / "work"), *extra])
        try:
            main()
            code = 0
        except SystemExit as done:
            code = done.code or 0
        return code, capsys.readouterr().err

    assert run()[0] == 0
    assert (tmp_path / "out" / RULES_FILE).is_file()
    assert Manifest.load(tmp_path / "work", "minilm-intent").stages["operate"].metrics["alerts"] == 8
    code, err = run()
    assert code == 2 and "already exists; pass --force" in err
    assert run("-f")[0] == 0


def test_alertmanager_config_passes_amtool(tmp_path: Path) -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip(
            "amtool is not installed: `make install-system` (apt-get install prometheus-alertmanager)"
        )
    config = ROOT / "docker" / "alertmanager" / "alertmanager.yml"
    checked = subprocess.run(
        [amtool, "check-config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # Pages route apart from warnings, and a down server does not also page as "model not ready".
    routes = yaml.safe_load(config.read_text())["route"]["routes"]
    assert any('severity="page"' in m for r in routes for m in r["matchers"])
    broken = tmp_path / "broken.yml"
    broken.write_text("route:\n  receiver: nowhere\nreceivers: []\n")
    assert (
        subprocess.run([amtool, "check-config", str(broken)], capture_output=True, timeout=60).returncode != 0
    )
