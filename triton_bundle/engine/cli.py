"""`triton-bundle build SPEC --variant fp32|fp16|int8 [--aot-check]`.

Imports stay light (no torch): this command also runs inside NVIDIA's TensorRT container, where only
the bundle's small dependencies are installed.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table

from triton_bundle.cli_common import ForceOpt, SpecArg, WorkdirOpt, console, open_spec
from triton_bundle.engine.errors import EngineError, GraphRejectedError


class VariantChoice(StrEnum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


class ProfileChoice(StrEnum):
    spec = "spec"
    eval_data = "eval-data"


VariantOpt = Annotated[
    list[VariantChoice] | None,
    typer.Option(
        "--variant",
        help="variant to build, repeat for several; default: every variant whose ONNX is recorded",
        show_default=False,
    ),
]
AotOpt = Annotated[
    bool,
    typer.Option(
        "--aot-check",
        help="no GPU needed: parse and build ahead of time with TensorRT for RTX to prove TensorRT "
        "accepts the graph (the plan is not servable by Triton)",
    ),
]
ProfilesOpt = Annotated[
    ProfileChoice,
    typer.Option(
        "--profiles",
        help="min/opt/max from the spec's shapes, or the sequence opt from the eval data's token lengths",
    ),
]
KeepPlanOpt = Annotated[
    bool, typer.Option("--keep-plan", help="with --aot-check: keep the TensorRT-RTX plan")
]


def _summary_table(results: list) -> Table:
    table = Table(title="TensorRT engines")
    for column in (
        "variant",
        "builder",
        "profile (batch x sequence)",
        "matmul/conv layers",
        "build",
        "size",
        "ok",
    ):
        table.add_column(column)
    for r in results:
        ranges = r.profile_plan.ranges
        profile = " / ".join(
            f"{getattr(ranges['batch'], k)}x{getattr(ranges['sequence'], k)}" for k in ("min", "opt", "max")
        )
        if r.engine is not None:
            builder = f"TensorRT {r.engine.tensorrt_version} on {r.engine.gpu_name}"
            compute = r.engine.compute_layer_precisions
            seconds, size = r.engine.build_seconds, (r.directory / r.engine.engine_file).stat().st_size
        else:
            builder = f"TensorRT-RTX {r.aot.tensorrt_rtx_version} (ahead of time)"
            compute = r.aot.layer_precisions.compute_layers if r.aot.layer_precisions else {}
            seconds, size = r.aot.build_seconds, r.aot.plan_bytes
        table.add_row(
            r.variant,
            builder,
            profile,
            ", ".join(f"{k} {v}" for k, v in sorted(compute.items())) or "-",
            f"{seconds:.1f}s" if seconds is not None else "-",
            f"{size / 1e6:.1f} MB" if size else "-",
            "[green]yes" if r.passed else "[red]NO",
        )
    return table


def build_command(
    spec_path: SpecArg,
    variant: VariantOpt = None,
    aot_check: AotOpt = False,
    profiles: ProfilesOpt = ProfileChoice.spec,
    workdir: WorkdirOpt = None,
    force: ForceOpt = False,
    keep_plan: KeepPlanOpt = False,
) -> None:
    """Build TensorRT engines (strongly typed, profiles from the spec) and an engine.json beside each."""
    from triton_bundle.engine.stage import available_variants, build_variant

    spec, workdir = open_spec(spec_path, workdir)
    if variant:
        chosen = [v.value for v in variant]
    else:
        chosen, skipped = available_variants(spec, workdir)
        for name, why in skipped.items():
            console.print(f"[yellow]skipping {name}[/]: {why}")
        if not chosen:
            raise EngineError(
                f"no variant of '{spec.name}' has an ONNX recorded in {workdir}; run export first"
            )
    results = []
    for name in chosen:
        what = "checking ahead of time with TensorRT-RTX" if aot_check else "building on the GPU"
        with console.status(f"{name}: {what}"):
            result = build_variant(
                spec,
                workdir,
                name,
                aot=aot_check,
                profiles=profiles.value,
                force=force,
                keep_plan=keep_plan,
                spec_path=str(spec_path),
            )
        results.append(result)
    for note in dict.fromkeys(n for r in results for n in r.profile_plan.notes):
        console.print(f"[yellow]note[/]: {note}")
    console.print(_summary_table(results))
    for r in results:
        console.print(f"[green]{r.variant}[/] {r.directory}")
    failed = [r for r in results if not r.passed]
    if failed:
        raise GraphRejectedError(
            "\n".join(r.aot.error or f"{r.variant}: failed" for r in failed if r.aot is not None),
            [n for r in failed if r.aot is not None for n in r.aot.unsupported_nodes],
        )
