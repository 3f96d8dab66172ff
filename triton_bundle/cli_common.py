"""Options and helpers every stage's CLI shares."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_type_hints

import typer

# Re-exported: the stage CLIs take every shared helper from here.
from triton_bundle.render import console, print_path, titled_table  # noqa: F401
from triton_bundle.spec import ModelSpec, load_spec

Command = TypeVar("Command", bound=Callable[..., Any])

SpecArg = Annotated[
    Path, typer.Argument(metavar="SPEC", help="the model's spec file (YAML)", show_default=False)
]
WorkdirOpt = Annotated[
    Path | None, typer.Option("--workdir", "-w", help="artifacts directory [default: artifacts/<name>]")
]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="replace existing artifacts")]


def open_spec(spec_path: Path, workdir: Path | None) -> tuple[ModelSpec, Path]:
    spec = load_spec(spec_path)
    return spec, Path(workdir) if workdir else spec.default_workdir()


def option_groups(command: Command) -> Command:
    """Let a command take a dataclass of options (an option group) as one parameter.

    Typer reads a command's options from its signature. Each parameter annotated with a dataclass whose
    fields are typer options (`url: UrlOpt = None`) is shown to typer as those fields, in place; the
    command is then called with the dataclass built from them. Commands that share options declare
    the group once instead of repeating each option.
    """
    hints = get_type_hints(command, include_extras=True)
    params: list[inspect.Parameter] = []
    groups: dict[str, tuple[type, list[str]]] = {}
    for param in inspect.signature(command).parameters.values():
        annotation = hints.get(param.name, param.annotation)
        if not (isinstance(annotation, type) and dataclasses.is_dataclass(annotation)):
            params.append(param.replace(annotation=annotation))
            continue
        field_hints = get_type_hints(annotation, include_extras=True)
        fields = dataclasses.fields(annotation)
        groups[param.name] = (annotation, [f.name for f in fields])
        params += [
            inspect.Parameter(
                f.name, param.POSITIONAL_OR_KEYWORD, default=f.default, annotation=field_hints[f.name]
            )
            for f in fields
        ]

    @functools.wraps(command)
    def grouped(**values: Any) -> Any:
        for name, (group, fields) in groups.items():
            values[name] = group(**{field: values.pop(field) for field in fields})
        return command(**values)

    grouped.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    grouped.__annotations__ = {p.name: p.annotation for p in params}
    return grouped  # type: ignore[return-value]
