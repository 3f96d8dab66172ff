"""Tensor modality: any nn.Module with inputs declared in the spec, fed real tensors from an .npz.

Named dims in the declared shapes are dynamic; their min / opt / max come from `shapes` ("batch",
"sequence", or `shapes.extra[name]`). Parity cases at those sizes are cut from (or, for sizes beyond
the data, wrapped around) the real eval tensors, never drawn at random.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from triton_bundle.export.errors import ExportDataError, ExportError
from triton_bundle.export.prepared import ParityCase, PreparedExport, chunks
from triton_bundle.export.tasks import ExportTask
from triton_bundle.export.torch_module import build_module
from triton_bundle.spec import ModelSpec, Range, TensorSpec

NUMPY_DTYPES: dict[str, type] = {
    "float32": np.float32,
    "float16": np.float16,
    "int64": np.int64,
    "int32": np.int32,
    "int8": np.int8,
    "uint8": np.uint8,
    "bool": np.bool_,
}


def dim_ranges(spec: ModelSpec) -> dict[str, Range]:
    return {"batch": spec.shapes.batch, "sequence": spec.shapes.sequence, **spec.shapes.extra}


def declared_axes(tensors: list[TensorSpec]) -> dict[str, dict[int, str]]:
    return {t.name: {axis: dim for axis, dim in enumerate(t.shape) if isinstance(dim, str)} for t in tensors}


def _check_ranges(inputs: list[TensorSpec], ranges: dict[str, Range]) -> None:
    for t in inputs:
        for dim in t.shape:
            if isinstance(dim, str) and dim not in ranges:
                raise ExportError(
                    f"input '{t.name}' has dynamic dim '{dim}' with no size range; add "
                    f"shapes.extra.{dim}: {{min: ..., opt: ..., max: ...}} to the spec"
                )


def load_tensors(path: Path | None, inputs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """The eval .npz: one array per declared input, with its rank, fixed dims and dtype kind."""
    if path is None or path.suffix != ".npz":
        raise ExportDataError(
            f"data.eval for a torch-module must be an .npz with one array per input "
            f"({', '.join(t.name for t in inputs)}), got {path}"
        )
    if not path.is_file():
        raise ExportDataError(f"evaluation tensors not found: {path}")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    feeds: dict[str, np.ndarray] = {}
    sizes: dict[str, tuple[str, int]] = {}
    for t in inputs:
        if t.dtype not in NUMPY_DTYPES:
            raise ExportError(f"input '{t.name}': dtype '{t.dtype}' cannot be exported as a tensor input")
        if t.name not in arrays:
            raise ExportDataError(f"{path} has no array '{t.name}' (it has: {sorted(arrays)})")
        array = arrays[t.name]
        if array.ndim != len(t.shape):
            raise ExportDataError(
                f"{path}: '{t.name}' has shape {list(array.shape)}, expected rank {len(t.shape)} ({t.shape})"
            )
        for axis, dim in enumerate(t.shape):
            size = int(array.shape[axis])
            if isinstance(dim, int) and size != dim:
                raise ExportDataError(f"{path}: '{t.name}' dim {axis} is {size}, the spec declares {dim}")
            if isinstance(dim, str):
                first = sizes.setdefault(dim, (t.name, size))
                if first[1] != size:
                    raise ExportDataError(
                        f"{path}: '{t.name}' has {dim}={size} but '{first[0]}' has {dim}={first[1]}"
                    )
        target = NUMPY_DTYPES[t.dtype]
        if not np.can_cast(array.dtype, target, casting="same_kind"):
            raise ExportDataError(f"{path}: '{t.name}' is {array.dtype}, which does not convert to {t.dtype}")
        feeds[t.name] = np.ascontiguousarray(array.astype(target))
    return feeds


def _resize(array: np.ndarray, axis: int, size: int) -> np.ndarray:
    # Real values cut to `size`, or wrapped around when the data is smaller than the size asked for.
    return np.take(array, np.arange(size) % array.shape[axis], axis=axis)


def tensor_case(name: str, data: dict[str, np.ndarray], axes: dict[str, dict[int, str]], sizes) -> ParityCase:
    feeds = {}
    for input_name, array in data.items():
        for axis, dim in axes[input_name].items():
            array = _resize(array, axis, sizes[dim])
        feeds[input_name] = np.ascontiguousarray(array)
    return ParityCase(name, feeds)


def tensor_parity_cases(spec: ModelSpec, data: dict[str, np.ndarray], axes) -> list[ParityCase]:
    ranges = dim_ranges(spec)
    dims = sorted({dim for per_input in axes.values() for dim in per_input.values()})
    cases = []
    for bound in ("min", "opt", "max"):
        sizes = {dim: getattr(ranges[dim], bound) for dim in dims}
        label = " x ".join(f"{dim} {size}" for dim, size in sizes.items()) or "fixed shape"
        cases.append(tensor_case(f"{bound}: {label}", data, axes, sizes))
    batch_axis = {name: next((a for a, d in per.items() if d == "batch"), None) for name, per in axes.items()}
    rows = next((data[n].shape[a] for n, a in batch_axis.items() if a is not None), None)
    if rows is None:
        return [*cases, ParityCase("eval", data)]
    for start, end in chunks(rows, spec.shapes.batch.max):
        feeds = {
            name: array
            if batch_axis[name] is None
            else np.take(array, range(start, end), axis=batch_axis[name])
            for name, array in data.items()
        }
        cases.append(ParityCase(f"eval[{start}:{end}]", feeds))
    return cases


def _output_axes(spec: ModelSpec, module, case: ParityCase, input_axes) -> dict[str, dict[int, str]]:
    """Declared outputs, checked against what the module returns; else 'output' / 'output_<i>'."""
    with torch.no_grad():
        out = module(*(torch.from_numpy(v) for v in case.feeds.values()))
    outs = [out] if isinstance(out, torch.Tensor) else list(out)
    if spec.outputs:
        if len(spec.outputs) != len(outs):
            raise ExportError(
                f"the module returns {len(outs)} tensor(s) but the spec declares {len(spec.outputs)} output(s) "
                f"({', '.join(t.name for t in spec.outputs)})"
            )
        return declared_axes(spec.outputs)
    names = ["output"] if len(outs) == 1 else [f"output_{i}" for i in range(len(outs))]
    # Undeclared outputs: dim 0 follows the inputs' leading dynamic dim when its size matches.
    first = next(iter(input_axes.values()), {})
    lead = first.get(0)
    lead_size = next(iter(case.feeds.values())).shape[0] if lead else None
    return {
        name: ({0: lead} if lead and o.ndim and o.shape[0] == lead_size else {})
        for name, o in zip(names, outs, strict=True)
    }


def prepare_tensor(spec: ModelSpec, task: ExportTask, source: Path | None = None) -> PreparedExport:
    inputs = list(spec.inputs or [])
    if not inputs:
        raise ExportError(
            "a torch-module export needs 'inputs' in the spec (name, dtype, shape with named dims)"
        )
    _check_ranges(inputs, dim_ranges(spec))
    raw, weights = build_module(spec)
    module = task.wrap(raw, spec.export).eval()
    if hasattr(module, "name_inputs"):  # lets the dynamo exporter map dynamic axes by input name
        module = module.name_inputs([t.name for t in inputs])
    axes = declared_axes(inputs)
    data = load_tensors(spec.resolve(spec.data.eval), inputs)
    cases = tensor_parity_cases(spec, data, axes)
    return PreparedExport(
        module=module,
        input_axes=axes,
        output_axes=_output_axes(spec, module, cases[1], axes),
        cases=cases,
        source=weights,
        labels=spec.labels,
        details={
            "module": spec.source.module,
            "kwargs": spec.source.kwargs,
            "input_dtypes": {t.name: t.dtype for t in inputs},
        },
    )
