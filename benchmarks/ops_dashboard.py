"""Render the generated Grafana dashboard's panels from a real local run (Grafana itself cannot be
installed on these machines): a local Triton serves the model, a real Prometheus (Debian's package)
scrapes it with the generated alerting rules loaded, a ramp of clients drives load, and each panel's own
PromQL is evaluated by Prometheus' query_range API and drawn with matplotlib. Also prints the alert
states Prometheus computed.

    python benchmarks/ops_dashboard.py --spec examples/minilm-intent/spec.yaml \
        --repository model_repository/minilm-intent --seconds 90 --out docs/operate
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from triton_bundle.client import TritonClient
from triton_bundle.data import load_texts
from triton_bundle.net import free_port
from triton_bundle.operate import dashboard, rules
from triton_bundle.plotting import Reference, draw_references
from triton_bundle.processes import stop_process_group
from triton_bundle.serving.local_triton import LocalTriton, ServerConfig
from triton_bundle.spec import load_spec

SCRAPE_S = 2
RATE_WINDOW = "10s"  # what Grafana's $__rate_interval becomes at a 2 s scrape interval
USERS = (1, 2, 4, 8)  # the ramp, one stage per quarter of the run


def _start_prometheus(workdir: Path, metrics_url: str, rules_file: Path) -> tuple[subprocess.Popen, str]:
    binary = shutil.which("prometheus")
    if binary is None:
        raise SystemExit("prometheus is not installed: make install-system (Debian package prometheus)")
    config = {
        "global": {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s"},
        "rule_files": [str(rules_file)],
        "scrape_configs": [{"job_name": "triton", "static_configs": [{"targets": [metrics_url]}]}],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address={address}",
        ],
        stdout=(workdir / "prometheus.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://{address}/-/ready", timeout=1)
            return process, address
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"prometheus did not start: {(workdir / 'prometheus.log').read_text()[-2000:]}")


def _drive(url: str, model: str, texts: list[str], seconds: float) -> int:
    """A ramp of closed-loop clients (USERS), one stage per quarter of the run; returns requests sent."""
    sent = [0]
    lock = threading.Lock()

    def user(stop_at: float, offset: int) -> None:
        with TritonClient(url) as client:
            i = offset
            while time.monotonic() < stop_at:
                client.classify(model, [texts[i % len(texts)]])
                i += 1
                with lock:
                    sent[0] += 1

    for users in USERS:
        stop_at = time.monotonic() + seconds / len(USERS)
        threads = [threading.Thread(target=user, args=(stop_at, k * 7)) for k in range(users)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return sent[0]


def _query_range(address: str, expr: str, start: float, end: float) -> list[dict]:
    query = urllib.parse.urlencode(
        {"query": expr.replace("$__rate_interval", RATE_WINDOW), "start": start, "end": end, "step": SCRAPE_S}
    )
    with urllib.request.urlopen(f"http://{address}/api/v1/query_range?{query}", timeout=30) as response:
        return json.loads(response.read())["data"]["result"]


def _legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


def _plot(
    panels: list[dashboard.Panel], data: list[list[tuple[str, list]]], start: float, out: Path, title: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = math.ceil(len(panels) / 2)
    fig, axes = plt.subplots(rows, 2, figsize=(14, 3.2 * rows), squeeze=False)
    for ax, panel, all_series in zip(axes.flat, panels, data, strict=False):
        # All-zero lines (no failures, an ensemble's own queue) would bury the ones that move.
        series = [(k, v) for k, v in all_series if any(float(x) != 0 for _, x in v)] or all_series[:1]
        hidden = len(all_series) - len(series)
        ax.set_title(panel.title + (f" ({hidden} all-zero series hidden)" if hidden else ""), fontsize=10)
        for legend, values in series:
            xs = [float(t) - start for t, _ in values]
            ys = [float(v) for _, v in values]
            ax.plot(xs, ys, label=legend, linewidth=1.2)
        values = [float(v) for _, points in series for _, v in points]
        # The plotting rules of the bundle: axes fit the data, a far-away SLO becomes a note.
        draw_references(ax, values, [Reference(t, "SLO") for t in panel.thresholds], panel.unit, log=False)
        if not series:
            ax.text(
                0.5, 0.5, "no data on this host (no GPU)", ha="center", va="center", transform=ax.transAxes
            )
        ax.set_xlabel("seconds", fontsize=8)
        ax.set_ylabel(panel.unit, fontsize=8)
        ax.tick_params(labelsize=8)
        if series:
            ax.legend(fontsize=7, loc="upper left")
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=Path("examples/minilm-intent/spec.yaml"))
    parser.add_argument("--repository", type=Path, default=None, help="default model_repository/<name>")
    parser.add_argument("--model", default=None, help="model to call (default: the spec's name)")
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--out", type=Path, default=Path("docs/operate"))
    args = parser.parse_args()
    spec = load_spec(args.spec)
    model = args.model or spec.name
    repository = args.repository or Path("model_repository") / spec.name
    texts = load_texts(spec.resolve(spec.data.eval), spec.data.text_field).texts
    if model != spec.name:  # the dashboard follows the model actually served
        spec.name = model
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rules_file = work / "alerts.rules.yml"
        rules_file.write_text(rules.rules_file_text(rules.alert_groups(spec)))
        with LocalTriton(ServerConfig(repository=repository, log_file=work / "triton.log")) as server:
            prometheus, address = _start_prometheus(work, server.metrics_url, rules_file)
            try:
                time.sleep(3 * SCRAPE_S)
                start = time.time()
                sent = _drive(f"http://{server.http_url}", model, texts, args.seconds)
                time.sleep(3 * SCRAPE_S)
                end = time.time()
                panels = dashboard.panels(spec)
                data = [
                    [
                        (_legend(target.legend, s["metric"]), s["values"])
                        for target in panel.targets
                        for s in _query_range(address, target.expr, start, end)
                    ]
                    for panel in panels
                ]
                with urllib.request.urlopen(f"http://{address}/api/v1/rules", timeout=10) as response:
                    groups = json.loads(response.read())["data"]["groups"]
            finally:
                stop_process_group(prometheus, grace_s=10)
    alerts = {r["name"]: r["state"] for g in groups for r in g["rules"]}
    title = (
        f"Triton: {model} - {sent} requests, ramp {'/'.join(map(str, USERS))} clients over {args.seconds:.0f} s "
        "(panels' PromQL evaluated by a local Prometheus, drawn with matplotlib)"
    )
    _plot(panels, data, start, args.out / "dashboard.png", title)
    summary = {
        "model": model,
        "requests": sent,
        "seconds": args.seconds,
        "alerts": alerts,
        "panels": {p.title: len(series) for p, series in zip(panels, data, strict=True)},
    }
    (args.out / "dashboard.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{sent} requests in {args.seconds:.0f} s; {args.out / 'dashboard.png'}")
    print(f"{'panel':55s} series")
    for name, count in summary["panels"].items():
        print(f"{name:55s} {count}")
    print(f"{'alert':30s} state")
    for name, state in alerts.items():
        print(f"{name:30s} {state}")


if __name__ == "__main__":
    main()
