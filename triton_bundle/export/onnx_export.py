"""torch -> ONNX with dynamic axes, a choice of exporter, a fallback, and a frozen-dim check."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from triton_bundle.export.errors import ExportError, FrozenDimensionError, UnsupportedOperatorError

# Protobuf's hard limit; larger models must keep weights in external data files.
PROTOBUF_LIMIT = 2 * 1024**3 - 1


@dataclass(frozen=True)
class ExportOutcome:
    path: Path
    exporter: str
    attempts: list[str]  # "exporter: error" for each exporter that failed first


def _export_torchscript(module, args, path, input_names, output_names, axes, opset) -> None:
    torch.onnx.export(
        module,
        args,
        str(path),
        input_names=input_names,
        output_names=output_names,
        dynamic_axes=axes,
        opset_version=opset,
        do_constant_folding=True,
        dynamo=False,
    )


def _export_dynamo(module, args, path, input_names, output_names, axes, opset) -> None:
    program = torch.onnx.export(
        module,
        args,
        input_names=input_names,
        output_names=output_names,
        dynamic_axes=axes,
        opset_version=opset,
        dynamo=True,
        external_data=True,
        optimize=True,
        verbose=False,
    )
    program.save(str(path), external_data=program.model.graph.initializers and _too_big(program))


def _too_big(program) -> bool:
    size = sum(
        init.const_value.nbytes for init in program.model.graph.initializers.values() if init.const_value
    )
    return size > PROTOBUF_LIMIT // 2


EXPORTERS = {"torchscript": _export_torchscript, "dynamo": _export_dynamo}


def _quiet():
    """The exporters print pages of warnings for normal models; keep them out of the user's terminal."""
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    return stack


def export_module(
    module: nn.Module,
    example_inputs: Mapping[str, torch.Tensor],
    path: Path,
    output_names: list[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
    opset: int = 17,
    exporter: str = "torchscript",
    fallback: bool = True,
) -> ExportOutcome:
    """Export `module` called with `example_inputs` (in order); try the other exporter on failure."""
    order = [exporter] + ([other for other in EXPORTERS if other != exporter] if fallback else [])
    input_names = list(example_inputs)
    args = tuple(example_inputs.values())
    axes = {name: dict(dims) for name, dims in dynamic_axes.items()}
    failures: list[str] = []
    module.eval()
    for name in order:
        path.unlink(missing_ok=True)
        try:
            with _quiet(), torch.no_grad():
                EXPORTERS[name](module, args, path, input_names, output_names, axes, opset)
        except Exception as exc:  # the exporters raise many unrelated types; report each one
            failures.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            continue
        _save_external_if_large(path)
        return ExportOutcome(path=path, exporter=name, attempts=failures)
    message = "; ".join(failures)
    if any(word in message.lower() for word in ("unsupported", "not supported", "no symbolic", "aten::")):
        raise UnsupportedOperatorError(
            f"no exporter could convert the model (tried {', '.join(order)}): {message}. "
            "Replace the op with supported ones, register a custom symbolic, or raise the opset."
        )
    raise ExportError(f"ONNX export failed with every exporter tried: {message}")


def _save_external_if_large(path: Path) -> None:
    if path.stat().st_size <= PROTOBUF_LIMIT // 2:
        return
    model = onnx.load(str(path))
    onnx.save_model(model, str(path), save_as_external_data=True, location=path.name + ".data")


def graph_dims(path: Path) -> dict[str, list[int | str]]:
    """Each graph input's dims: an int when fixed, its symbolic name when dynamic."""
    model = onnx.load(str(path), load_external_data=False)
    dims: dict[str, list[int | str]] = {}
    for value in model.graph.input:
        shape = value.type.tensor_type.shape.dim
        dims[value.name] = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in shape]
    return dims


def check_dynamic_dims(
    path: Path,
    dynamic_axes: Mapping[str, Mapping[int, str]],
    feeds_a: Mapping[str, np.ndarray],
    feeds_b: Mapping[str, np.ndarray],
) -> None:
    """Fail if a declared dynamic dim became a constant: by the graph's declared shapes, and by
    running the model at two different sizes (an export can keep a symbolic input yet bake the
    size into a Reshape)."""
    import onnxruntime as ort

    declared = graph_dims(path)
    for name, axes in dynamic_axes.items():
        if name not in declared:
            continue
        for axis, dim_name in axes.items():
            value = declared[name][axis]
            if isinstance(value, int):
                raise FrozenDimensionError(
                    f"input '{name}' dim {axis} ('{dim_name}') was exported as the constant {value}; "
                    "expected a dynamic dim. Check the model for shape-dependent Python control flow."
                )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for feeds in (feeds_a, feeds_b):
        shapes = {k: tuple(v.shape) for k, v in feeds.items()}
        try:
            session.run(None, dict(feeds))
        except Exception as exc:
            raise FrozenDimensionError(
                f"the exported graph fails at input shapes {shapes}: a dynamic dim was frozen during export "
                f"({str(exc).splitlines()[0]})"
            ) from None
