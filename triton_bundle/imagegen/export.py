"""The export stage for `task: image-generation`: the generator to ONNX (latent + class in, image out, dynamic
batch), with parity against PyTorch on the images themselves at the spec's seeds.

Parity holds when every case's max |ONNX - PyTorch| is within export.tolerances.max_abs and the uint8
images (what clients receive) reach image.min_parity_psnr_db (identical images count as infinite).
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from triton_bundle.atomic import atomic_path, check_overwrite
from triton_bundle.export.errors import ParityError
from triton_bundle.export.record import ExportDetails, ExportRecord
from triton_bundle.export.report import JSON_NAME, MARKDOWN_NAME, OutputParity, ParityReport
from triton_bundle.imagegen import contract
from triton_bundle.manifest import Manifest, dump_json
from triton_bundle.spec import ModelSpec

ONNX_DIR, ONNX_FILE = "onnx", "model.onnx"


class GeneratorGraph(nn.Module):
    """The served signature: latent [B, *latent_shape] float32, class_label [B, 1] int64 -> image [B, C, H, W]."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, latent: torch.Tensor, class_label: torch.Tensor) -> torch.Tensor:
        return self.generator(latent, class_label[:, 0])


class UnconditionalGraph(GeneratorGraph):
    """An unconditional generator (the spec has no labels): latent alone -> image."""

    def forward(self, latent: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.generator(latent)


def conditional(spec: ModelSpec) -> bool:
    """Class-conditional when the spec names classes (labels); else the graph takes the latent alone."""
    return bool(spec.labels)


def graph_inputs(spec: ModelSpec) -> list[str]:
    return [contract.LATENT, contract.CLASS_LABEL] if conditional(spec) else [contract.LATENT]


def load_generator(spec: ModelSpec, manifest: Manifest) -> tuple[nn.Module, Path]:
    """The trained generator: weights from the finetune record, else source.weights."""
    from safetensors.torch import load_file

    from triton_bundle.export.errors import CheckpointError
    from triton_bundle.imagegen.train import build_generator

    record = manifest.stages.get("finetune")
    weights = (
        record.artifact("weights")
        if record and "weights" in record.artifacts
        else spec.resolve(spec.source.weights)
    )
    if weights is None or not Path(weights).is_file():
        raise CheckpointError(
            f"no generator weights for '{spec.name}': run `triton-bundle finetune <spec>` or set source.weights "
            f"(a .safetensors file){f'; {weights} is missing' if weights else ''}"
        )
    generator = build_generator(spec)
    missing, unexpected = generator.load_state_dict(load_file(str(weights)), strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{weights} does not fit {type(generator).__name__}: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return generator.eval(), Path(weights)


def gate_inputs(spec: ModelSpec, seeds: list[int] | None = None) -> dict[str, np.ndarray]:
    """The graph's feeds for the gate seeds: latents from imagegen.seeds, class = seed % classes."""
    from triton_bundle.imagegen.seeds import latents_for_seeds

    seeds = list(spec.image.gate_seeds if seeds is None else seeds)
    feeds = {contract.LATENT: latents_for_seeds(seeds, spec.image.latent_shape)}
    if conditional(spec):
        feeds[contract.CLASS_LABEL] = (np.array(seeds, dtype=np.int64) % len(spec.labels)).reshape(-1, 1)
    return feeds


def _cases(spec: ModelSpec, feeds: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Batch 1, the spec's opt and max batch (each a slice of the gate seeds)."""
    n = len(feeds[contract.LATENT])
    sizes = sorted({1, min(spec.shapes.batch.opt, n), min(spec.shapes.batch.max, n)})
    return {f"batch {b}": {k: v[:b] for k, v in feeds.items()} for b in sizes}


def _pin_image_dims(spec: ModelSpec, path: Path) -> None:
    """Write the spec's per-image dims into the graph's output (a generator that reshapes with -1, like the
    MLP family, exports them as symbolic dims, which Triton cannot batch); parity then checks the real shape."""
    import onnx

    from triton_bundle.imagegen.repository import image_dims

    model = onnx.load(str(path))
    output = next(o for o in model.graph.output if o.name == contract.GENERATED)
    dims = output.type.tensor_type.shape.dim
    wanted = image_dims(spec.image)[0]
    if len(dims) != 1 + len(wanted):
        raise ParityError(
            f"the generator's output has {len(dims)} dims; expected [batch, {', '.join(map(str, wanted))}]"
        )
    for dim, value in zip(list(dims)[1:], wanted, strict=True):
        dim.Clear()
        dim.dim_value = value
    onnx.save(model, str(path))


def _compare(spec: ModelSpec, graph: nn.Module, onnx_path: Path, feeds) -> ParityReport:
    import onnxruntime as ort

    from triton_bundle.imagegen.metrics import psnr
    from triton_bundle.imagegen.png import to_uint8

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    tol, outputs, failures, worst_psnr = spec.export.tolerances, [], [], math.inf
    for case, case_feeds in {**_cases(spec, feeds), "all gate seeds": feeds}.items():
        with torch.no_grad():
            expected = graph(*(torch.from_numpy(v) for v in case_feeds.values())).numpy()
        got = session.run([contract.GENERATED], case_feeds)[0]
        diff = float(np.abs(got - expected).max())
        rel = float((np.abs(got - expected) / (np.abs(expected) + 1e-6)).max())
        quality = psnr(
            to_uint8(expected, spec.image.value_range, spec.image.layout),
            to_uint8(got, spec.image.value_range, spec.image.layout),
        )
        worst_psnr = min(worst_psnr, quality)
        ok = diff <= tol.max_abs and quality >= spec.image.min_parity_psnr_db
        outputs.append(
            OutputParity(
                case=case,
                output=contract.GENERATED,
                shape=list(got.shape),
                max_abs=diff,
                max_rel=rel,
                within_tolerance=ok,
            )
        )
        if not ok:
            failures.append(
                f"{case}: max |diff| {diff:.2e} (limit {tol.max_abs:g}), PSNR {quality:.1f} dB (min {spec.image.min_parity_psnr_db:g})"
            )
    note = f"uint8 image PSNR ONNX vs PyTorch: worst {'identical' if math.isinf(worst_psnr) else f'{worst_psnr:.1f} dB'}"
    return ParityReport(
        onnx=str(onnx_path), exporter=spec.export.exporter, agreement_kind="images", cases=[o.case for o in outputs],
        outputs=outputs, examples=len(feeds[contract.LATENT]), tolerances=tol, passed=not failures,
        failures=failures, notes=[note], task=spec.task, opset=spec.export.opset,
        dynamic_axes={name: {"0": "batch"} for name in (*graph_inputs(spec), contract.GENERATED)},
    )  # fmt: skip


def export_generator(spec: ModelSpec, workdir: Path, force: bool = False):
    """Export the trained generator; prove parity at the gate seeds; record onnx + checkpoint."""
    from triton_bundle.export.onnx_export import export_module
    from triton_bundle.export.stage import ExportResult

    workdir = Path(workdir)
    target = workdir / ONNX_DIR
    check_overwrite(target / ONNX_FILE, force)
    manifest = Manifest.load(workdir, spec.name)
    generator, weights = load_generator(spec, manifest)
    graph = (GeneratorGraph if conditional(spec) else UnconditionalGraph)(generator).eval()
    feeds = gate_inputs(spec)
    example = {k: torch.from_numpy(v[: spec.shapes.batch.opt]) for k, v in feeds.items()}
    axes = {name: {0: "batch"} for name in (*graph_inputs(spec), contract.GENERATED)}
    workdir.mkdir(parents=True, exist_ok=True)
    with atomic_path(target, force=True) as tmp, tempfile.TemporaryDirectory(dir=workdir) as scratch:
        raw = Path(scratch) / ONNX_FILE
        outcome = export_module(graph, example, raw, [contract.GENERATED], axes, opset=spec.export.opset,
                                exporter=spec.export.exporter, fallback=spec.export.fallback)  # fmt: skip
        _pin_image_dims(spec, raw)
        report = _compare(spec, graph, raw, feeds)
        report.exporter, report.exporter_attempts = outcome.exporter, outcome.attempts
        if not report.passed:
            raise ParityError(
                f"ONNX export of '{spec.name}' failed parity: {'; '.join(report.failures)} (nothing was written to {target})"
            )
        tmp.mkdir()
        shutil.move(str(raw), str(tmp / ONNX_FILE))
        report.onnx = str(target / ONNX_FILE)
        dump_json(tmp / JSON_NAME, report)
        (tmp / MARKDOWN_NAME).write_text(report.markdown(), encoding="utf-8")
    record = manifest.record(
        ExportRecord(
            artifacts={"onnx": (target / ONNX_FILE).resolve(), "checkpoint": weights.parent.resolve()},
            metrics={"max_abs": max(o.max_abs for o in report.outputs)},
            details=ExportDetails(
                task=spec.task, modality="tensor", exporter=report.exporter, input_names=graph_inputs(spec),
                output_names=[contract.GENERATED], image=spec.image.model_dump(mode="json"),
                inputs=graph_inputs(spec), outputs=[contract.GENERATED],
            ),
        )
    )  # fmt: skip
    manifest.save(workdir)
    return ExportResult(
        onnx=(target / ONNX_FILE).resolve(),
        report=report,
        report_path=(target / JSON_NAME).resolve(),
        record=record,
    )
