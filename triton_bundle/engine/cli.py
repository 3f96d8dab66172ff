"""`triton-bundle build SPEC --variant fp32|fp16|int8 [--aot-check]`.

Imports stay light (no torch): this command also runs inside NVIDIA's TensorRT container, where only
the bundle's small dependencies are installed.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
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


def _builder(r) -> str:
    if r.engine is not None:
        return f"TensorRT {r.engine.tensorrt_version} on {r.engine.gpu_name}"
    return f"TensorRT-RTX {r.aot.tensorrt_rtx_version}, ahead of time"


def _summary_table(results: list) -> Table:
    """One row per variant; the builder goes in the title when shared, so the columns fit 80."""
    builders = {_builder(r) for r in results}
    shared = next(iter(builders)) if len(builders) == 1 else None
    table = titled_table(f"TensorRT engines ({shared})" if shared else "TensorRT engines")
    table.add_column("variant", no_wrap=True)
    if not shared:
        table.add_column("builder", overflow="fold")
    table.add_column("matmul/conv layers", overflow="fold")
    for column in ("build", "size", "ok"):
        table.add_column(column, no_wrap=True)
    for r in results:
        if r.engine is not None:
            compute = r.engine.compute_layer_precisions
            seconds, size = r.engine.build_seconds, (r.directory / r.engine.engine_file).stat().st_size
        else:
            compute = r.aot.layer_precisions.compute_layers if r.aot.layer_precisions else {}
            seconds, size = r.aot.build_seconds, r.aot.plan_bytes
        table.add_row(
            r.variant,
            *([] if shared else [_builder(r)]),
            ", ".join(f"{k} {v}" for k, v in sorted(compute.items())) or "-",
            f"{seconds:.1f}s" if seconds is not None else "-",
            f"{size / 1e6:.1f} MB" if size else "-",
            "[green]yes" if r.passed else "[red]NO",
        )
    return table


def _dims(shape: list[int]) -> str:
    return "x".join(str(d) for d in shape)


def _profile_tables(results: list) -> list[Table]:
    """Each input's real min / opt / max (no sequence dim is invented for vision or tensor models);
    inputs with the same shapes share a row, variants with the same profile share a table."""
    by_profile: dict[str, list[str]] = {}
    profiles = {}
    for r in results:
        key = r.profile_plan.profile.model_dump_json()
        by_profile.setdefault(key, []).append(r.variant)
        profiles[key] = r.profile_plan
    tables = []
    for key, variants in by_profile.items():
        plan = profiles[key]
        which = "" if len(by_profile) == 1 else f" of {', '.join(variants)}"
        table = titled_table(f"optimisation profile{which} (from {plan.source})")
        table.add_column("input", overflow="fold")
        for column in ("min", "opt", "max"):
            table.add_column(column, no_wrap=True)
        rows: dict[tuple[str, str, str], list[str]] = {}
        for name, (low, opt, high) in plan.profile.shapes.items():
            rows.setdefault((_dims(low), _dims(opt), _dims(high)), []).append(name)
        for dims, names in rows.items():
            table.add_row(", ".join(names), *dims)
        tables.append(table)
    return tables


def print_build(results: list, out: Console | None = None) -> None:
    """Profile notes, the engines table, each input's profile, and where each variant went."""
    out = out or console
    for note in dict.fromkeys(n for r in results for n in r.profile_plan.notes):
        out.print(f"[yellow]note[/]: {note}")
    out.print(_summary_table(results))
    for table in _profile_tables(results):
        out.print(table)
    for r in results:
        print_path(f"[green]{r.variant}[/]", r.directory, out)


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
    print_build(results)
    failed = [r for r in results if not r.passed]
    if failed:
        raise GraphRejectedError(
            "\n".join(r.aot.error or f"{r.variant}: failed" for r in failed if r.aot is not None),
            [n for r in failed if r.aot is not None for n in r.aot.unsupported_nodes],
        )
