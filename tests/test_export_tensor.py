"""Any nn.Module (import path + kwargs + safetensors) with declared inputs: a DCGAN-like generator,
external data, the exporter fallback, and overwrite protection."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fixtures.export_builders import make_spec, save_module_weights, tensor_spec_fields, write_latents

from triton_bundle.atomic import ArtifactExistsError
from triton_bundle.export.errors import UnsupportedOperatorError
from triton_bundle.export.stage import ONNX_DIR, ONNX_FILE, export_model
from triton_bundle.manifest import Manifest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def latents(tmp_path_factory):
    return write_latents(tmp_path_factory.mktemp("latents") / "eval.npz", rows=10)


@pytest.fixture(scope="module")
def generator_export(latents, tmp_path_factory):
    """The generator exported once with a tiny external-data threshold (its ~80 kB of weights)."""
    base = tmp_path_factory.mktemp("generator")
    weights = save_module_weights(base / "generator.safetensors", "TinyGenerator", width=8)
    spec = make_spec(
        base,
        **tensor_spec_fields(
            weights,
            latents,
            "TinyGenerator",
            name="tiny-gan",
            module_kwargs={"width": 8},
            outputs=[{"name": "image", "dtype": "float32", "shape": ["batch", 3, 32, 32]}],
            export={"external_data_threshold_mb": 0.01},
        ),
    )
    return spec, base / "work", export_model(spec, base / "work")


def test_generator_exports_with_parity_and_external_data(generator_export, latents):
    spec, workdir, result = generator_export
    report = result.report
    assert report.passed, report.failures
    assert report.external_data == ONNX_FILE + ".data"
    assert report.cleanup is not None and report.cleanup.kept
    assert report.examples == 10

    record = Manifest.load(workdir, spec.name).require("export", "export")
    assert record.details["modality"] == "tensor"
    assert record.details["output_names"] == ["image"]
    assert record.details["graph_outputs"]["image"] == ["batch", 3, 32, 32]
    assert record.details["external_data"] is True
    data_file = record.artifacts["onnx_data"]
    assert data_file.is_file() and data_file.stat().st_size > 50_000

    # The weights really live outside the .onnx, and the pair loads and runs from its directory.
    bare = onnx.load(str(result.onnx), load_external_data=False)
    assert any(init.data_location == onnx.TensorProto.EXTERNAL for init in bare.graph.initializer)
    session = ort.InferenceSession(str(result.onnx), providers=["CPUExecutionProvider"])
    with np.load(latents) as npz:
        (images,) = session.run(None, {"latent": npz["latent"][:3]})
    assert images.shape == (3, 3, 32, 32)
    assert images.min() >= -1.0 and images.max() <= 1.0  # tanh output survived the export


def test_existing_export_needs_force(generator_export):
    spec, workdir, result = generator_export
    before = result.onnx.stat().st_mtime_ns
    with pytest.raises(ArtifactExistsError, match=r"model\.onnx already exists; pass --force"):
        export_model(spec, workdir)
    assert result.onnx.stat().st_mtime_ns == before

    again = export_model(spec, workdir, force=True)
    assert again.report.passed
    assert again.onnx.stat().st_mtime_ns != before
    assert sorted(p.name for p in again.onnx.parent.iterdir()) == [
        "model.onnx",
        "model.onnx.data",
        "verification.json",
        "verification.md",
    ]


def test_exporter_fallback_is_used_and_recorded(latents, tmp_path):
    weights = save_module_weights(tmp_path / "w.safetensors", "RunningLogSumExp")
    spec = make_spec(tmp_path, **tensor_spec_fields(weights, latents, "RunningLogSumExp"))
    assert spec.export.exporter == "torchscript"

    result = export_model(spec, tmp_path / "work")

    assert result.report.passed, result.report.failures
    assert result.report.exporter == "dynamo"
    assert len(result.report.exporter_attempts) == 1
    assert "torchscript" in result.report.exporter_attempts[0]
    assert "aten::logcumsumexp" in result.report.exporter_attempts[0]
    markdown = (tmp_path / "work" / ONNX_DIR / "verification.md").read_text()
    assert "exporter failed first: torchscript" in markdown
    details = Manifest.load(tmp_path / "work", spec.name).require("export", "export").details
    assert (details["exporter"], details["exporter_requested"]) == ("dynamo", "torchscript")


def test_without_fallback_the_unconvertible_op_is_named(latents, tmp_path):
    weights = save_module_weights(tmp_path / "w.safetensors", "RunningLogSumExp")
    spec = make_spec(
        tmp_path, **tensor_spec_fields(weights, latents, "RunningLogSumExp", export={"fallback": False})
    )
    with pytest.raises(UnsupportedOperatorError, match=r"aten::logcumsumexp \(torchscript\)") as err:
        export_model(spec, tmp_path / "work")
    assert "dynamo" not in str(err.value).split("Details")[0]
    assert not (tmp_path / "work" / ONNX_DIR / ONNX_FILE).exists()
