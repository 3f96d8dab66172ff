"""`triton-bundle compress`: prune + distill the teacher into a student behind the accuracy gate."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from triton_bundle.cli_common import ForceOpt, SpecArg, WorkdirOpt, console, open_spec

SearchOpt = Annotated[
    bool,
    typer.Option(
        "--search",
        help="try compress.search_layers students from small to large; keep the smallest that passes",
    ),
]
LayersOpt = Annotated[
    int | None, typer.Option("--layers", help="layers the student keeps [default: compress.target.layers]")
]


def compress_command(
    spec_path: SpecArg,
    search: SearchOpt = False,
    layers: LayersOpt = None,
    workdir: WorkdirOpt = None,
    force: ForceOpt = False,
) -> None:
    """Prune layers and FFN neurons, distill the teacher into the student, gate it; export then serves it."""
    from triton_bundle.compress.report import COLUMNS
    from triton_bundle.compress.stage import compress
    from triton_bundle.spec import CompressSpec

    spec, workdir = open_spec(spec_path, workdir)
    if layers is not None:
        spec.compress = spec.compress or CompressSpec()
        spec.compress.target.layers = layers
    result = compress(spec, workdir, force=force, search=search)
    report = result.report
    table = Table(
        title=f"Teacher vs students: '{spec.name}' ({report.eval_examples} held-out examples, "
        f"mean {report.mean_tokens:.1f} tokens, onnxruntime CPU)"
    )
    for column in COLUMNS:
        table.add_column(column)
    for row in report.table_rows():
        gate = row[-1]
        row[-1] = "[green]pass" if gate == "pass" else ("-" if gate == "-" else f"[red]{escape(gate)}")
        table.add_row(*row)
    console.print(table)
    order = report.importance.removal_order
    console.print(f"layer importance (greedy removal, least important first): {order}")
    top = ", ".join(f"L{layer}H{head} {score:.2f}" for layer, head, score in report.importance.top_heads[:4])
    console.print(f"most important heads: {top}")
    if result.passed:
        console.print(f"[green]student[/] {report.selected}: {result.student}")
        console.print("export, precision and serving now use it (the manifest's compress record)")
    else:
        console.print(
            f"[red]rejected[/] every candidate failed the gate (report: {result.directory / 'report.md'}); "
            "the teacher stays the served checkpoint"
        )
    console.print(f"report: {result.directory / 'report.md'}")
    if not result.passed:
        raise typer.Exit(code=1)
