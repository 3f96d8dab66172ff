"""`triton-bundle init`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from triton_bundle.cli_common import console


def _kwargs(text: str | None) -> dict:
    from triton_bundle.init.stage import InitError

    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InitError(
            f"--kwargs is not valid JSON ({exc.msg}); expected an object like '{{\"width\": 8}}'"
        ) from None
    if not isinstance(value, dict):
        raise InitError(f"--kwargs must be a JSON object of constructor arguments, got {text}")
    return value


def init_command(
    checkpoint: Annotated[
        Path | None,
        typer.Argument(
            metavar="SOURCE",
            help="a Hugging Face checkpoint directory, or an .onnx file",
            show_default=False,
        ),
    ] = None,
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            "-d",
            help="held-out data: texts (.jsonl/.csv/.txt), images (a folder or a .jsonl of paths), or "
            "a module's .npz sample",
            show_default=False,
        ),
    ] = ...,
    train: Annotated[Path | None, typer.Option(help="training texts (fine-tuning, calibration)")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="the spec to write")] = Path("spec.yaml"),
    module: Annotated[
        str | None, typer.Option(help="a plain nn.Module: 'pkg.module:Class' or 'file.py:Class'")
    ] = None,
    weights: Annotated[Path | None, typer.Option(help="--module: its weights (.safetensors)")] = None,
    kwargs: Annotated[str | None, typer.Option(help="--module: constructor arguments as JSON")] = None,
    name: Annotated[str | None, typer.Option(help="model name [default: from the directory]")] = None,
    task: Annotated[str | None, typer.Option(help="override the task read from the config")] = None,
    text_field: Annotated[str | None, typer.Option(help="the data's text field [default: found]")] = None,
    label_field: Annotated[str | None, typer.Option(help="the data's label field [default: found]")] = None,
    image_field: Annotated[str | None, typer.Option(help="the image-path field [default: found]")] = None,
    allow_pickle: Annotated[bool, typer.Option(help="accept pickled weights (trusted files only)")] = False,
    force: Annotated[bool, typer.Option("--force", "-f", help="replace an existing spec")] = False,
) -> None:
    """Write a commented spec.yaml from a checkpoint, an ONNX file or a module, and data; then validate it."""
    from triton_bundle.init.stage import InitOptions, init_spec

    options = InitOptions(
        data=data, out=out, checkpoint=checkpoint, module=module, weights=weights, kwargs=_kwargs(kwargs),
        train=train, name=name, task=task, text_field=text_field, label_field=label_field,
        image_field=image_field, allow_pickle=allow_pickle, force=force,
    )  # fmt: skip
    with console.status("reading the checkpoint and the data"):
        result = init_spec(options)
    spec = result.spec
    console.print(
        f"[green]wrote[/] {result.spec_path} ([bold]{spec.name}[/], task {spec.task}); it validates"
    )
    if spec.labels:
        shown = ", ".join(spec.labels[:8]) + (", ..." if len(spec.labels) > 8 else "")
        console.print(f"labels: {escape(shown)}")
    for note in result.notes:
        console.print(f"[yellow]note[/] {escape(note)}")
    console.print("next:")
    for command in result.next_commands:
        console.print(f"  {escape(command)}", soft_wrap=True)
