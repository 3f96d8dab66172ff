"""`triton-bundle ops generate SPEC`: alerting rules, dashboard and autoscaling rules from the spec."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Production monitoring generated from the spec.", no_args_is_help=True)
_console = Console(soft_wrap=True)


@app.command()
def generate(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="the model's spec.yaml")],
    out: Annotated[
        Path | None,
        typer.Option(
            help="root laid out like the checkout; '.' refreshes docker/ and deploy/ (default artifacts/<name>/ops)"
        ),
    ] = None,
    workdir: Annotated[
        Path | None, typer.Option(help="artifacts directory (default artifacts/<name>)")
    ] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="replace existing files")] = False,
) -> None:
    """Write Prometheus alerting rules (+ a PrometheusRule), a Grafana dashboard (+ its ConfigMap) and
    the prometheus-adapter rules the HPA needs, with thresholds from the spec's loadtest.slo."""
    from triton_bundle.operate.stage import generate_ops
    from triton_bundle.spec import load_spec

    spec = load_spec(spec_path)
    result = generate_ops(spec, workdir or spec.default_workdir(), out=out, force=force)
    for relative, path in result.files.items():
        _console.print(f"{relative}  ->  {path}")
    _console.print(
        f"{len(result.alerts)} alerts ({', '.join(result.alerts)}), {result.panels} dashboard panels"
    )
