"""torch -> ONNX with dynamic axes, a choice of exporter, a fallback, external data, a frozen-dim check."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from triton_bundle.export.errors import ExportError, FrozenDimensionError, UnsupportedOperatorError

# Protobuf's hard limit on one serialised message: larger models must keep weights in external data.
PROTOBUF_LIMIT = 2 * 1024**3 - 1
DEFAULT_EXTERNAL_THRESHOLD = PROTOBUF_LIMIT // 2
DATA_SUFFIX = ".data"

# How each exporter names an op it cannot convert.
_OP_PATTERNS = (
    re.compile(r"Exporting the operator '([\w:.]+)'"),  # TorchScript: "... 'aten::erfinv' to ONNX opset ..."
    re.compile(r"No ONNX function found for <OpOverload\(op='([\w.]+)'"),  # dynamo
    re.compile(r"Couldn't export Python operator (\w+)"),  # autograd.Function without a symbolic
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class ExportOutcome:
    path: Path
    exporter: str
    attempts: list[str]  # "exporter: error" for each exporter that failed first
    opset: int = 0  # the default-domain opset the file actually declares
    external_data: str | None = None  # the weights file beside the model, when there is one
    unsupported_ops: dict[str, list[str]] = field(default_factory=dict)


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
        optimize=True,
        verbose=False,
    )
    _unshadow_boundary_names(program.model)
    program.save(str(path))


def _unshadow_boundary_names(model) -> None:
    """Rename inner values that carry a graph input/output name.

    The dynamo exporter renames graph outputs without checking for clashes: a DistilBERT output
    named 'embedding' collides with the aten::embedding node's value and ONNX Runtime rejects the
    file ("Duplicate definition of name").
    """
    import onnx_ir as ir

    boundary = [*model.graph.inputs, *model.graph.outputs]
    reserved = {value.name for value in boundary}
    keep = {id(value) for value in boundary}
    for number, node in enumerate(ir.traversal.RecursiveGraphIterator(model.graph)):
        for value in node.outputs:
            if id(value) not in keep and value.name in reserved:
                value.name = f"{value.name}__inner_{number}"


EXPORTERS = {"torchscript": _export_torchscript, "dynamo": _export_dynamo}


@contextlib.contextmanager
def _native_output_silenced() -> Iterator[None]:
    """The TorchScript exporter dumps its whole graph from C++ on failure; the error says enough."""
    saved: list[tuple[int, int]] = []
    try:
        with open(os.devnull, "wb") as null:
            for fd in (1, 2):
                try:
                    saved.append((fd, os.dup(fd)))
                except OSError:  # no such descriptor (embedded interpreters): nothing to silence
                    continue
                os.dup2(null.fileno(), fd)
            yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)


def _quiet():
    """The exporters print pages of warnings (and graph dumps on failure); keep them off the terminal."""
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    stack.enter_context(_native_output_silenced())
    for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript"):
        logger = logging.getLogger(name)
        stack.callback(logger.setLevel, logger.level)
        logger.setLevel(logging.ERROR)
    return stack


def _summary(exc: BaseException) -> str:
    """One line per failure: the dynamo exporter's first line is boilerplate, its summary is not."""
    text = _ANSI.sub("", str(exc))
    if "## Exception summary" in text:
        tail = text.split("## Exception summary", 1)[1]
        line = next((ln.strip() for ln in tail.splitlines() if ln.strip()), "")
        return f"{type(exc).__name__}: {line}"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}: {first}"


def unsupported_ops(exc: BaseException) -> list[str]:
    text = _ANSI.sub("", str(exc))
    found: list[str] = []
    for pattern in _OP_PATTERNS:
        found += [op for op in pattern.findall(text) if op not in found]
    return found


def _runtime_rejects(path: Path) -> str | None:
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph types
        return str(exc).splitlines()[0]
    return None


def initializer_bytes(model: onnx.ModelProto) -> int:
    return sum(init.ByteSize() for init in model.graph.initializer)


def save_onnx(
    model: onnx.ModelProto, path: Path, external_threshold: int = DEFAULT_EXTERNAL_THRESHOLD
) -> str | None:
    """Save `model`; weights go to `<name>.data` beside it when they exceed the threshold."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = path.with_name(path.name + DATA_SUFFIX)
    data.unlink(missing_ok=True)  # save_model appends to an existing data file
    if initializer_bytes(model) <= external_threshold:
        onnx.save_model(model, str(path))
        return None
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data.name,
        size_threshold=1024,
    )
    return data.name


def opset_of(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def export_module(
    module: nn.Module,
    example_inputs: Mapping[str, torch.Tensor],
    path: Path,
    output_names: list[str],
    dynamic_axes: Mapping[str, Mapping[int, str]],
    opset: int = 17,
    exporter: str = "torchscript",
    fallback: bool = True,
    external_threshold: int = DEFAULT_EXTERNAL_THRESHOLD,
) -> ExportOutcome:
    """Export `module` called with `example_inputs` (in order); try the other exporter on failure.

    Each exporter writes into a scratch directory (a large TorchScript export scatters one file per
    weight); the result is re-saved at `path` as one .onnx, plus one .data file when it is large.
    """
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter '{exporter}' (expected one of: {', '.join(EXPORTERS)})")
    order = [exporter] + ([other for other in EXPORTERS if other != exporter] if fallback else [])
    input_names = list(example_inputs)
    args = tuple(example_inputs.values())
    axes = {name: dict(dims) for name, dims in dynamic_axes.items() if dims}
    failures: list[str] = []
    ops: dict[str, list[str]] = {}
    module.eval()
    for name in order:
        with tempfile.TemporaryDirectory(prefix="export-", dir=path.parent) as scratch:
            raw = Path(scratch) / "model.onnx"
            try:
                with _quiet(), torch.no_grad():
                    EXPORTERS[name](module, args, raw, input_names, output_names, axes, opset)
            except Exception as exc:  # the exporters raise many unrelated types; report each one
                failures.append(f"{name}: {_summary(exc)}")
                if found := unsupported_ops(exc):
                    ops[name] = found
                continue
            if problem := _runtime_rejects(raw):  # an exporter can "succeed" with an invalid graph
                failures.append(f"{name}: ONNX Runtime rejects the graph: {problem}")
                continue
            model = onnx.load(str(raw))  # pulls in any external data the exporter wrote
        external = save_onnx(model, path, external_threshold)
        return ExportOutcome(
            path=path,
            exporter=name,
            attempts=failures,
            opset=opset_of(model),
            external_data=external,
            unsupported_ops=ops,
        )
    if ops:
        named = "; ".join(f"{', '.join(found)} ({name})" for name, found in ops.items())
        raise UnsupportedOperatorError(
            f"no exporter could convert the operator(s) {named} at opset {opset} (tried {', '.join(order)}). "
            "Expected ops with an ONNX conversion: replace the op with supported ones, register a custom "
            f"symbolic / ONNX function, or raise export.opset. Details: {'; '.join(failures)}"
        )
    raise ExportError(f"ONNX export failed with every exporter tried: {'; '.join(failures)}")


def graph_dims(path: Path, which: str = "input") -> dict[str, list[int | str]]:
    """Each graph input's (or output's) dims: an int when fixed, its symbolic name when dynamic."""
    model = onnx.load(str(path), load_external_data=False)
    values = model.graph.input if which == "input" else model.graph.output
    initializers = {init.name for init in model.graph.initializer}
    dims: dict[str, list[int | str]] = {}
    for value in values:
        if value.name in initializers:
            continue
        shape = value.type.tensor_type.shape.dim
        dims[value.name] = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?") for d in shape]
    return dims


def graph_dtypes(path: Path) -> dict[str, str]:
    """Element type of every graph input and output, as numpy names ('float32', 'int64', ...)."""
    model = onnx.load(str(path), load_external_data=False)
    return {
        v.name: np.dtype(onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type)).name
        for v in [*model.graph.input, *model.graph.output]
    }


def _sizes(feeds: Mapping[str, np.ndarray], axes: Mapping[str, Mapping[int, str]]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for name, per_input in axes.items():
        if name in feeds:
            for axis, dim in per_input.items():
                sizes.setdefault(dim, int(feeds[name].shape[axis]))
    return sizes


def check_dynamic_dims(
    path: Path,
    dynamic_axes: Mapping[str, Mapping[int, str]],
    feeds_a: Mapping[str, np.ndarray],
    feeds_b: Mapping[str, np.ndarray],
    output_axes: Mapping[str, Mapping[int, str]] | None = None,
) -> str:
    """Fail if a declared dynamic dim became a constant; return what was checked.

    Three looks: the graph's declared input shapes; running the graph at two different sizes (an
    export can keep a symbolic input yet bake the size into a Reshape, which then fails); and each
    output dim named like an input dim must follow that input's size at both sizes.
    """
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
                    "expected a dynamic dim. Check the model for shape-dependent Python code (int(x.shape[0]), "
                    "x.view(8, -1), a size-dependent constant)."
                )
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph types
        raise ExportError(
            f"ONNX Runtime cannot load the exported graph {path.name}: {str(exc).splitlines()[0]}; expected a "
            "valid ONNX model (try the other exporter: export.exporter)"
        ) from None
    output_names = [o.name for o in session.get_outputs()]
    checked = []
    for feeds in (feeds_a, feeds_b):
        sizes = _sizes(feeds, dynamic_axes)
        shapes = {k: tuple(v.shape) for k, v in feeds.items()}
        try:
            outputs = dict(zip(output_names, session.run(None, dict(feeds)), strict=True))
        except Exception as exc:
            raise FrozenDimensionError(
                f"the exported graph fails at input shapes {shapes}: a dynamic dim was frozen during export "
                f"({str(exc).splitlines()[0]}); expected it to run at every size in the spec's shapes"
            ) from None
        for out_name, per_output in (output_axes or {}).items():
            if out_name not in outputs:
                continue
            for axis, dim in per_output.items():
                got = int(outputs[out_name].shape[axis])
                if dim in sizes and got != sizes[dim]:
                    raise FrozenDimensionError(
                        f"output '{out_name}' dim {axis} ('{dim}') is {got} when the inputs' '{dim}' is "
                        f"{sizes[dim]}: the export baked a size into the graph (e.g. a reshape to a Python "
                        f"int); expected it to follow the input"
                    )
        checked.append(", ".join(f"{d}={s}" for d, s in sizes.items()) or "fixed shapes")
    return f"ran at {checked[0]} and {checked[1]}"
