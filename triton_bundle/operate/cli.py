"""`triton-bundle ops generate SPEC`: alerting rules, dashboard and autoscaling rules from the spec."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from triton_bundle.cli_common import ForceOpt, SpecArg, WorkdirOpt, open_spec

app = typer.Typer(help="Production monitoring generated from the spec.", no_args_is_help=True)
_console = Console(soft_wrap=True)


@app.command()
def generate(
    spec_path: SpecArg,
    out: Annotated[
        Path | None,
        typer.Option(
            help="root laid out like the checkout; '.' refreshes docker/ and deploy/ (default artifacts/<name>/ops)"
        ),
    ] = None,
    workdir: WorkdirOpt = None,
    force: ForceOpt = False,
) -> None:
    """Write Prometheus alerting rules (+ a PrometheusRule), a Grafana dashboard (+ its ConfigMap) and
    the prometheus-adapter rules the HPA needs, with thresholds from the spec's loadtest.slo."""
    from triton_bundle.operate.stage import generate_ops

    spec, workdir = open_spec(spec_path, workdir)
    result = generate_ops(spec, workdir, out=out, force=force)
    for relative, path in result.files.items():
        _console.print(f"{relative}  ->  {path}")
    _console.print(
        f"{len(result.alerts)} alerts ({', '.join(result.alerts)}), {result.panels} dashboard panels"
    )
