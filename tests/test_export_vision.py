"""Image classification (ViT, ConvNeXt, ResNet) exports with parity on real image files, and the
checkpoint's preprocessing is recorded so a client can send raw images."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from fixtures.export_builders import LABELS, draw_images, make_spec, save_vision_checkpoint

from triton_bundle.export.image_data import load_image_paths, read_rgb
from triton_bundle.export.stage import export_model
from triton_bundle.manifest import Manifest


@pytest.fixture(scope="module")
def image_list(tmp_path_factory):
    return draw_images(tmp_path_factory.mktemp("images") / "eval", count=9)


def _replay(preprocessing: dict, path) -> np.ndarray:
    """What a client or the serving side does with the recorded settings (resize-only processors)."""
    from PIL import Image

    assert preprocessing["channel_order"] == "RGB" and preprocessing["layout"] == "NCHW"
    size = preprocessing["size"]
    image = read_rgb(path).resize(
        (size["width"], size["height"]), Image.Resampling(preprocessing["resample"])
    )
    pixels = np.asarray(image, dtype=np.float32) * preprocessing["rescale_factor"]
    pixels = (pixels - np.array(preprocessing["image_mean"])) / np.array(preprocessing["image_std"])
    return pixels.transpose(2, 0, 1)[None].astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["vit", "convnext", "resnet"])
def test_image_classifier_exports_with_parity(arch, image_list, tmp_path):
    import transformers

    checkpoint = save_vision_checkpoint(tmp_path / "checkpoint", arch)
    spec = make_spec(
        tmp_path,
        name=f"tiny-{arch}",
        task="image-classification",
        source={"path": str(checkpoint)},
        data={"eval": str(image_list)},
    )
    result = export_model(spec, tmp_path / "work")

    assert result.report.passed, result.report.failures
    assert result.report.label_agreement == 1.0
    assert result.report.examples == 9
    record = Manifest.load(tmp_path / "work", spec.name).require("export", "export")
    assert record.details["modality"] == "vision"
    assert record.details["input_names"] == ["pixel_values"]
    assert record.details["graph_inputs"]["pixel_values"] == ["batch", 3, 32, 32]
    assert record.details["labels"] == LABELS

    # The recorded preprocessing is the checkpoint's, as transformers reads it.
    recorded = record.details["preprocessing"]
    config = json.loads((checkpoint / "preprocessor_config.json").read_text())
    for key in ("size", "resample", "rescale_factor", "image_mean", "image_std"):
        assert recorded[key] == config[key], key
    assert recorded["input_size"] == [3, 32, 32]
    if arch == "resnet":
        assert recorded["do_center_crop"] and recorded["crop_size"] == {"height": 32, "width": 32}
    if arch == "convnext":
        assert recorded["crop_pct"] == pytest.approx(0.875)
    if arch != "vit":
        return

    # Raw image -> recorded steps -> ONNX gives what transformers gives: clients can send raw images.
    processor = transformers.AutoImageProcessor.from_pretrained(checkpoint)
    session = ort.InferenceSession(str(result.onnx), providers=["CPUExecutionProvider"])
    for path in load_image_paths(image_list).paths[:3]:
        replayed = _replay(recorded, path)
        reference = processor([read_rgb(path)], return_tensors="np")["pixel_values"]
        np.testing.assert_allclose(replayed, reference, atol=1e-5)
        (logits,) = session.run(None, {"pixel_values": replayed})
        (expected,) = session.run(None, {"pixel_values": reference.astype(np.float32)})
        assert logits.argmax(-1) == expected.argmax(-1)


def test_image_directory_lists_images_with_folder_labels(tmp_path):
    from PIL import Image

    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / label / "a.png")
    (tmp_path / "notes.txt").write_text("not an image")
    data = load_image_paths(tmp_path)
    assert [p.name for p in data.paths] == ["a.png", "a.png"]
    assert data.labels == ["cat", "dog"]
