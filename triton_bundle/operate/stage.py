"""`ops generate`: write the alerting rules, dashboard and autoscaling rules for one spec.

Paths are relative to an output root laid out like the checkout, so `--out .` refreshes the files the
compose file and the Kubernetes manifests use (docker/..., deploy/monitoring/...), and the default
(`artifacts/<name>/ops`) previews them without touching the checkout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from triton_bundle.atomic import check_overwrite, write_text_atomic
from triton_bundle.manifest import Manifest
from triton_bundle.operate import adapter, dashboard, rules
from triton_bundle.operate.record import OperateDetails, OperateRecord
from triton_bundle.spec import ModelSpec

NAMESPACE = "triton-bundle"  # the one deploy/base/namespace.yaml creates
RULES_FILE = Path("docker/prometheus/alerts.rules.yml")
PROMETHEUS_RULE = Path("deploy/monitoring/prometheus-rule.yaml")
ADAPTER_VALUES = Path("deploy/monitoring/prometheus-adapter-values.yaml")
DASHBOARD_CONFIGMAP = Path("deploy/monitoring/grafana-dashboard.yaml")


def dashboard_file(spec: ModelSpec) -> Path:
    return Path("docker/grafana/dashboards") / f"{spec.name}.json"


def ops_files(spec: ModelSpec) -> dict[Path, str]:
    """Every generated file, by its path relative to the checkout."""
    groups = rules.alert_groups(spec)
    return {
        RULES_FILE: rules.rules_file_text(groups),
        PROMETHEUS_RULE: rules.prometheus_rule_text(groups, f"triton-{spec.name}", NAMESPACE),
        ADAPTER_VALUES: adapter.adapter_values_text(spec),
        dashboard_file(spec): dashboard.dashboard_text(spec),
        DASHBOARD_CONFIGMAP: dashboard.configmap_text(spec, NAMESPACE),
    }


@dataclass(frozen=True)
class OpsResult:
    root: Path
    files: dict[Path, Path]  # checkout-relative path -> written file
    alerts: list[str]
    panels: int


def generate_ops(spec: ModelSpec, workdir: Path, out: Path | None = None, force: bool = False) -> OpsResult:
    root = (out if out is not None else Path(workdir) / "ops").resolve()
    files = ops_files(spec)
    for relative in files:  # all or nothing: refuse before writing any
        check_overwrite(root / relative, force)
    written = {relative: write_text_atomic(root / relative, text) for relative, text in files.items()}
    result = OpsResult(
        root=root,
        files=written,
        alerts=[r.alert for g in rules.alert_groups(spec) for r in g.rules],
        panels=len(dashboard.panels(spec)),
    )
    manifest = Manifest.load(workdir, spec.name)
    manifest.record(
        OperateRecord(
            artifacts={p.as_posix(): path for p, path in written.items()},
            metrics={"alerts": float(len(result.alerts)), "panels": float(result.panels)},
            details=OperateDetails(thresholds=rules.Thresholds.from_spec(spec)),
        )
    )
    manifest.save(workdir)
    return result
