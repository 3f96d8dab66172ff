"""The spec's entries for an ONNX file: inputs and outputs read from the graph, checked by one run.

Symbolic dims keep one name across inputs and outputs: dim 0 is the batch, a dim whose name says
sequence / length / tokens is the sequence, any other gets a range under `shapes.extra` sized from the
sample. The sample (.npz, one array per graph input) is run once with onnxruntime before anything is
written, so a file that does not run on its own data fails here, with the shapes it got.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from triton_bundle.data import DataError
from triton_bundle.export.tensor_inputs import NUMPY_DTYPES
from triton_bundle.init.render import Entry
from triton_bundle.init.stage import InitError, InitOptions, default_name, rel, shapes_entry
from triton_bundle.spec import Range

_SEQUENCE_NAME = re.compile(r"seq|length|len$|tokens?", re.IGNORECASE)


def _dim_names(dims: dict[str, list[int | str]]) -> dict[str, str]:
    """Graph dim_param -> the spec's dim name."""
    names: dict[str, str] = {}
    for shape in dims.values():
        for axis, dim in enumerate(shape):
            if isinstance(dim, str) and dim not in names:
                if axis == 0:
                    names[dim] = "batch"
                elif _SEQUENCE_NAME.search(dim):
                    names[dim] = "sequence"
                else:
                    names[dim] = re.sub(r"\W+", "_", dim).strip("_").lower() or f"dim{axis}"
    return names


def _shape(tensor: str, dims: list[int | str], names: dict[str, str]) -> list[int | str]:
    shape: list[int | str] = []
    for axis, dim in enumerate(dims):
        if isinstance(dim, int):
            shape.append(dim)
        elif dim == "?":  # unnamed dynamic dim
            shape.append("batch" if axis == 0 else f"{tensor}_dim{axis}")
        else:
            shape.append(names[dim])
    return shape


def _dtype(name: str, dtype: str) -> str:
    if dtype not in NUMPY_DTYPES:
        raise InitError(
            f"tensor '{name}' is {dtype}, which the tensor task does not serve ({', '.join(NUMPY_DTYPES)})"
        )
    return dtype


def _dry_run(path: Path, sample: Path, inputs: dict[str, str]) -> dict[str, np.ndarray]:
    """The sample's arrays (all rows), after running the graph once on its first two rows."""
    import onnxruntime as ort

    if sample.suffix != ".npz" or not sample.is_file():
        raise DataError(f"{sample}: an ONNX model's sample must be an existing .npz, one array per input")
    with np.load(sample, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    missing = [name for name in inputs if name not in arrays]
    if missing:
        raise DataError(
            f"{sample} has no array for input(s) {missing} of {path.name} (it has: {sorted(arrays)})"
        )
    feeds = {name: arrays[name][:2].astype(dtype) for name, dtype in inputs.items()}
    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
    except Exception as exc:  # onnxruntime's own error types
        shapes = {k: list(v.shape) for k, v in feeds.items()}
        raise InitError(
            f"{path.name} does not run on the sample {shapes}: {str(exc).splitlines()[0]}"
        ) from None
    return arrays


def _extra_ranges(inputs: list[dict], arrays: dict[str, np.ndarray]) -> dict[str, Range]:
    """min 1, opt = max = the sample's size: the range the data can vouch for."""
    ranges: dict[str, Range] = {}
    for tensor in inputs:
        for axis, dim in enumerate(tensor["shape"]):
            if isinstance(dim, str) and dim != "batch" and dim not in ranges:
                size = int(arrays[tensor["name"]].shape[axis])
                ranges[dim] = Range(min=1, opt=size, max=size)
    return ranges


def onnx_entries(options: InitOptions, spec_dir: Path) -> tuple[str, list[Entry], list[str]]:
    from triton_bundle.export.adopt import load_onnx
    from triton_bundle.export.onnx_export import graph_dims, graph_dtypes

    path = Path(options.checkpoint)
    model = load_onnx(path)
    in_dims, out_dims, dtypes = graph_dims(path), graph_dims(path, "output"), graph_dtypes(path)
    names = _dim_names(in_dims)
    inputs = [
        {"name": n, "dtype": _dtype(n, dtypes[n]), "shape": _shape(n, d, names)} for n, d in in_dims.items()
    ]
    arrays = _dry_run(path, Path(options.data), {t["name"]: t["dtype"] for t in inputs})
    outputs = [
        {"name": n, "dtype": _dtype(n, dtypes[n]), "shape": _shape(n, d, names)} for n, d in out_dims.items()
    ]
    ranges = _extra_ranges(inputs, arrays)
    shapes: dict[str, Any] = shapes_entry(ranges.pop("sequence", None))
    if ranges:
        shapes["extra"] = {name: r.model_dump() for name, r in ranges.items()}
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    sample = rel(Path(options.data), spec_dir)
    entries = [
        Entry("name", options.name or default_name(path), "the model's name in Triton and artifacts/<name>"),
        Entry("task", "tensor", f"an ONNX graph (opset {opset}): tensors in, tensors out"),
        Entry("source", {"kind": "onnx", "path": rel(path, spec_dir)}, "export checks it and adopts it"),
        Entry(
            "data",
            {"eval": sample},
            f"{sample}: {len(next(iter(arrays.values())))} rows, one array per input",
        ),
        Entry("inputs", inputs, "from the graph: dim 0 is the batch; other symbolic dims keep a name"),
        Entry("outputs", outputs, "from the graph"),
        Entry(
            "shapes",
            shapes,
            "batch: 1..32, 8 typical (dynamic batching)\nother dims: 1 up to the sample's size",
        ),
    ]
    from triton_bundle.init.sources import LOADTEST, SERVING

    return str(path), [*entries, SERVING, LOADTEST], []
