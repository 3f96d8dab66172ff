"""A plain nn.Module's inputs and outputs, found by one dry run on a real sample (.npz, one array per input).

Dim 0 of every input is the batch (dynamic); the other dims keep the sample's sizes (fixed) until the
user names them in the spec. Outputs are whatever the module returns, flattened the way the export
wraps them: a tensor is `output`, a tuple `output_<i>`, a dict (or ModelOutput) its keys.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from triton_bundle.export.errors import SourceModuleError
from triton_bundle.export.tensor_inputs import NUMPY_DTYPES
from triton_bundle.init.datafile import DataError
from triton_bundle.spec import SourceSpec, TensorSpec

_DRY_RUN_ROWS = 2  # a batch of two tells the batch dim from a fixed dim of the same size


@dataclass
class ModuleFacts:
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    sample_rows: int
    class_name: str


def _dtype_name(dtype) -> str:
    name = str(dtype).removeprefix("torch.")
    if name not in NUMPY_DTYPES:
        raise SourceModuleError(
            f"tensor dtype {name} is not one the bundle serves ({', '.join(NUMPY_DTYPES)})"
        )
    return name


def _load_sample(path: Path) -> dict[str, np.ndarray]:
    if path.suffix != ".npz":
        raise DataError(f"{path}: a module's sample must be an .npz with one array per forward() input")
    if not path.is_file():
        raise DataError(f"sample not found: {path}")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    if not arrays:
        raise DataError(f"{path} holds no arrays (expected one per forward() input)")
    rows = {name: a.shape[0] if a.ndim else 0 for name, a in arrays.items()}
    if min(rows.values()) < 1 or len(set(rows.values())) != 1:
        raise DataError(f"{path}: every array needs the same number of rows along dim 0, got {rows}")
    return arrays


def _input_order(module, names: list[str]) -> list[str]:
    """forward()'s parameter order when the sample names them all, else the sample's order."""
    params = [p for p in inspect.signature(module.forward).parameters]
    if set(names) <= set(params):
        return sorted(names, key=params.index)
    return names


def _flatten(out) -> list[tuple[str, object]]:
    import torch

    if isinstance(out, torch.Tensor):
        return [("output", out)]
    if isinstance(out, dict):
        return [(str(k), v) for k, v in out.items()]
    return [(f"output_{i}", v) for i, v in enumerate(out)]


def _tensor_spec(name: str, shape, dtype: str, rows: int) -> TensorSpec:
    dims: list[int | str] = [int(d) for d in shape]
    if dims and dims[0] == rows:
        dims[0] = "batch"
    return TensorSpec(name=name, dtype=dtype, shape=dims)


def dry_run(source: SourceSpec, base_dir: Path, sample: Path) -> ModuleFacts:
    """Build the module from `source`, run it once on the sample's first rows, describe its tensors."""
    import torch

    from triton_bundle.export.torch_module import build_from_source

    module, _ = build_from_source(source, base_dir)
    arrays = _load_sample(sample)
    names = _input_order(module, list(arrays))
    rows = min(_DRY_RUN_ROWS, next(iter(arrays.values())).shape[0])
    feeds = [torch.from_numpy(np.ascontiguousarray(arrays[name][:rows])) for name in names]
    try:
        with torch.no_grad():
            out = module(*feeds)
    except Exception as exc:  # the user's code: any failure is reported with the shapes it got
        shapes = {name: list(arrays[name].shape[1:]) for name in names}
        raise SourceModuleError(
            f"{type(module).__name__} failed on the sample ({', '.join(names)} with per-row shapes {shapes}): "
            f"{type(exc).__name__}: {exc}"
        ) from None
    inputs = [_tensor_spec(n, arrays[n][:rows].shape, _dtype_name(arrays[n].dtype), rows) for n in names]
    outputs = [_tensor_spec(n, t.shape, _dtype_name(t.dtype), rows) for n, t in _flatten(out)]
    return ModuleFacts(inputs, outputs, int(next(iter(arrays.values())).shape[0]), type(module).__name__)
