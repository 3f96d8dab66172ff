"""PyTorch vs ONNX Runtime parity on real inputs at the spec's min / opt / max shapes.

Polygraphy's Comparator runs both and judges closeness per output; the task's own agreement
(labels, cosine similarity) is measured on top, because tiny logit drift that flips a label matters
more than a large one that does not.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from polygraphy.backend.base import BaseRunner
from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
from polygraphy.comparator import Comparator
from polygraphy.comparator.compare import SimpleCompareFunc
from polygraphy.logger import G_LOGGER

from triton_bundle.export.prepared import ParityCase
from triton_bundle.export.report import OutputParity, ParityReport
from triton_bundle.export.tasks import Agreement
from triton_bundle.spec import Tolerances

__all__ = ["OutputParity", "ParityCase", "ParityReport", "TorchCpuRunner", "compare"]

G_LOGGER.module_severity = G_LOGGER.ERROR


class TorchCpuRunner(BaseRunner):
    """Polygraphy runner for an nn.Module on CPU (polygraphy's PytRunner moves inputs to CUDA)."""

    def __init__(
        self,
        module: torch.nn.Module,
        input_names: Sequence[str],
        output_names: Sequence[str],
        example: Mapping[str, np.ndarray] | None = None,
    ):
        super().__init__(name="pytorch", prefix="pytorch-runner")
        self.module = module
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        # dtype and rank per input (every dim dynamic); token ids when no example is given
        self.signature = {
            name: (example[name].dtype, example[name].ndim) if example else (np.dtype(np.int64), 2)
            for name in self.input_names
        }

    def activate_impl(self):
        self.module.eval()

    def get_input_metadata_impl(self):
        from polygraphy.common import TensorMetadata

        metadata = TensorMetadata()
        for name, (dtype, rank) in self.signature.items():
            metadata.add(name, dtype, (-1,) * rank)
        return metadata

    def infer_impl(self, feed_dict):
        with torch.no_grad():
            args = [torch.from_numpy(np.asarray(feed_dict[name])) for name in self.input_names]
            outputs = self.module(*args)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        self.inference_time = 0.0
        return OrderedDict((name, out.numpy()) for name, out in zip(self.output_names, outputs, strict=True))

    def deactivate_impl(self):
        pass


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(a.shape[0], -1).astype(np.float64)
    b = b.reshape(b.shape[0], -1).astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def compare(
    module: torch.nn.Module,
    onnx_path: Path,
    cases: Sequence[ParityCase],
    output_names: Sequence[str],
    agreement: Agreement,
    tolerances: Tolerances,
    exporter: str,
    masks: Mapping[str, np.ndarray] | None = None,
) -> ParityReport:
    """Run PyTorch and ONNX Runtime on every case and judge them against the tolerances."""
    input_names = list(cases[0].feeds)
    runners = [
        TorchCpuRunner(module, input_names, output_names, example=cases[0].feeds),
        OnnxrtRunner(SessionFromOnnx(str(onnx_path), providers=["cpu"])),
    ]
    compare_func = SimpleCompareFunc(atol=tolerances.max_abs, rtol=tolerances.max_rel, check_shapes=True)
    with G_LOGGER.verbosity(G_LOGGER.CRITICAL):  # mismatches become the report's failures, not log lines
        results = Comparator.run(runners, data_loader=[case.feeds for case in cases])
        accuracy = Comparator.compare_accuracy(results, compare_func=compare_func)
    close = bool(accuracy)

    torch_iters, onnx_iters = results[0][1], results[1][1]
    per_iteration = next(iter(accuracy[0].values()))  # one runner pair: [{output: OutputCompareResult}]
    outputs: list[OutputParity] = []
    agree, total, cosines = 0, 0, []
    for case, ref, got, verdicts in zip(cases, torch_iters, onnx_iters, per_iteration, strict=True):
        for name in output_names:
            verdict = verdicts[name]
            outputs.append(
                OutputParity(
                    case=case.name,
                    output=name,
                    shape=list(np.shape(ref[name])),
                    max_abs=float(verdict.max_absdiff),
                    max_rel=float(verdict.max_reldiff),
                    within_tolerance=bool(verdict),
                )
            )
        first = output_names[0]
        a, b = np.asarray(ref[first]), np.asarray(got[first])
        if agreement == "labels":
            same = a.argmax(-1) == b.argmax(-1)
            mask = (masks or {}).get(case.name)
            if mask is not None and same.ndim == 2:  # token classification: real tokens only
                same = same[mask.astype(bool)]
            agree += int(same.sum())
            total += int(same.size)
        elif agreement == "cosine":
            cosines.extend(_cosine(a, b).tolist())

    failures = []
    if not close:
        worst = max(outputs, key=lambda o: o.max_abs)
        failures.append(
            f"outputs differ beyond tolerance: worst '{worst.output}' at {worst.case} max abs {worst.max_abs:.3g} "
            f"(allowed {tolerances.max_abs:g} + {tolerances.max_rel:g} x |ref|)"
        )
    label_agreement = agree / total if total else None
    min_cos = min(cosines) if cosines else None
    if label_agreement is not None and label_agreement < tolerances.min_label_agreement:
        failures.append(f"label agreement {label_agreement:.4f} below {tolerances.min_label_agreement}")
    if min_cos is not None and min_cos < tolerances.min_cosine:
        failures.append(f"minimum cosine {min_cos:.6f} below {tolerances.min_cosine}")
    examples = sum(next(iter(c.feeds.values())).shape[0] for c in cases)
    return ParityReport(
        onnx=str(onnx_path),
        exporter=exporter,
        agreement_kind=agreement,
        cases=[c.name for c in cases],
        outputs=outputs,
        label_agreement=label_agreement,
        min_cosine=min_cos,
        examples=examples,
        tolerances=tolerances,
        passed=not failures,
        failures=failures,
    )
