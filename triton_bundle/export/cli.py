"""`triton-bundle finetune` and `triton-bundle export`."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from triton_bundle.cli_common import (
    ForceOpt,
    SpecArg,
    WorkdirOpt,
    console,
    open_spec,
    print_path,
    titled_table,
)


def finetune_command(spec_path: SpecArg, workdir: WorkdirOpt = None, force: ForceOpt = False) -> None:
    """Fine-tune the spec's classifier on its training data (safetensors + tokenizer + labels)."""
    from triton_bundle.finetune import finetune

    spec, workdir = open_spec(spec_path, workdir)
    result = finetune(spec, workdir, force=force)
    accuracy = "n/a (no labels)" if result.eval_accuracy is None else f"{result.eval_accuracy:.3f}"
    console.print(
        f"[green]fine-tuned[/] {result.train_examples} examples in {result.seconds:.1f}s; held-out accuracy "
        f"{accuracy}; checkpoint: {result.checkpoint}"
    )


def export_command(spec_path: SpecArg, workdir: WorkdirOpt = None, force: ForceOpt = False) -> None:
    """Export to ONNX and prove parity with PyTorch on the spec's held-out data."""
    from triton_bundle.export.stage import export_model

    spec, workdir = open_spec(spec_path, workdir)
    with console.status("exporting to ONNX and checking parity"):
        result = export_model(spec, workdir, force=force)
    print_export(result)


def _parity_table(report) -> Table:
    """Case x output rows; one output's name goes in the shape header, so case names stay whole at 80."""
    outputs = list(dict.fromkeys(o.output for o in report.outputs))
    single = outputs[0] if len(outputs) == 1 else None
    table = titled_table(
        f"ONNX parity ({report.exporter} exporter, opset {report.opset}, {report.examples} real examples)"
    )
    table.add_column("case", no_wrap=True)
    if not single:
        table.add_column("output", no_wrap=True)
    table.add_column(f"{single} shape" if single else "shape", overflow="fold")
    for column in ("max abs", "max rel", "ok"):
        table.add_column(column, no_wrap=True)
    for o in report.outputs:
        table.add_row(
            o.case,
            *([] if single else [o.output]),
            "x".join(map(str, o.shape)),
            f"{o.max_abs:.2e}",
            f"{o.max_rel:.2e}",
            "[green]yes" if o.within_tolerance else "[red]NO",
        )
    return table


def print_export(result, out: Console | None = None) -> None:
    """The parity table, what the export learned on the way, and where the ONNX and report went."""
    out = out or console
    report = result.report
    if report.outputs:  # an imported ONNX has no PyTorch reference to compare with
        out.print(_parity_table(report))
    if report.label_agreement is not None:
        out.print(f"label agreement: {report.label_agreement:.4f}")
    if report.min_cosine is not None:
        out.print(f"min cosine: {report.min_cosine:.6f}")
    if report.generation_match is not None:
        out.print(f"greedy generation equal to PyTorch generate(): {report.generation_match:.2%} of prompts")
    for attempt in report.exporter_attempts:
        out.print(f"[yellow]exporter failed first[/] {escape(attempt)}")
    if report.frozen_dim_check:
        out.print(f"dynamic dims: {report.frozen_dim_check}")
    if report.cleanup is not None:
        verdict = "[green]kept" if report.cleanup.kept else "[yellow]not kept"
        out.print(f"graph clean-up ({report.cleanup.tool}) {verdict}[/]: {escape(report.cleanup.reason)}")
    if report.external_data:
        out.print(f"weights in external data: {report.external_data}")
    for note in report.notes:
        out.print(escape(note))
    print_path("[green]ONNX[/]", result.onnx, out)
    print_path("[green]report[/]", result.report_path, out)
