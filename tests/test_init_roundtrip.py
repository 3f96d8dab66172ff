"""`init` then `export`, unedited, for every task's tiny checkpoint: two families per task."""

from __future__ import annotations

import pytest
from fixtures.export_builders import (
    MODELS_FILE,
    draw_images,
    save_module_weights,
    save_text_checkpoint,
    save_vision_checkpoint,
    write_latents,
    write_texts,
)

from triton_bundle.export.stage import export_model
from triton_bundle.init.stage import InitOptions, init_spec, slug
from triton_bundle.manifest import Manifest
from triton_bundle.spec import load_spec

pytestmark = pytest.mark.slow

TEXT_CASES = [
    ("bert", "text-classification"),
    ("distilbert", "text-classification"),
    ("roberta", "token-classification"),
    ("bert", "token-classification"),
    ("distilbert", "feature-extraction"),
    ("roberta", "feature-extraction"),
]


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    return write_texts(tmp_path_factory.mktemp("texts") / "heldout.jsonl", count=10)


def _export(spec_path, tmp_path):
    spec = load_spec(spec_path)
    result = export_model(spec, tmp_path / "work")
    assert result.report.passed, result.report.failures
    return spec, Manifest.load(tmp_path / "work", spec.name).require("export", "export")


@pytest.mark.parametrize(("arch", "task"), TEXT_CASES, ids=[f"{a}-{t}" for a, t in TEXT_CASES])
def test_text_checkpoint_init_then_export(arch, task, texts, tmp_path):
    checkpoint = save_text_checkpoint(tmp_path / "checkpoint", arch, task)
    result = init_spec(InitOptions(checkpoint=checkpoint, data=texts, out=tmp_path / "specs" / "spec.yaml"))
    assert result.spec.task == task  # read from the config's head, not given
    spec, record = _export(result.spec_path, tmp_path)
    assert spec.name == slug(tmp_path.name)  # "checkpoint" says nothing: named after its parent
    if task != "feature-extraction":
        assert spec.labels == ["tag_0", "tag_1", "tag_2"]
    # The sequence max respects the position table, RoBERTa's padding offset included.
    assert spec.shapes.sequence.max == {"bert": 64, "distilbert": 64, "roberta": 71}[arch]
    assert record.details["graph_inputs"]["input_ids"] == ["batch", "sequence"]


@pytest.mark.parametrize("arch", ["vit", "resnet"])
def test_image_checkpoint_init_then_export(arch, tmp_path):
    checkpoint = save_vision_checkpoint(tmp_path / arch, arch)
    listing = draw_images(tmp_path / "images", count=6)
    result = init_spec(InitOptions(checkpoint=checkpoint, data=listing, out=tmp_path / "spec.yaml"))
    assert result.spec.task == "image-classification"
    assert result.spec.labels == ["circle", "square", "triangle"]
    assert "pixel_values [3, 32, 32]" in result.spec_path.read_text()
    _export(result.spec_path, tmp_path)


@pytest.mark.parametrize(("class_name", "kwargs"), [("TinyGenerator", {"width": 4}), ("GaussianEncoder", {})])
def test_module_init_then_export(class_name, kwargs, tmp_path):
    weights = save_module_weights(tmp_path / "weights.safetensors", class_name, **kwargs)
    sample = write_latents(tmp_path / "latents.npz")
    options = InitOptions(
        module=f"{MODELS_FILE}:{class_name}",
        weights=weights,
        kwargs=kwargs,
        data=sample,
        out=tmp_path / "s.yaml",
    )
    result = init_spec(options)
    assert [(t.name, t.shape) for t in result.spec.inputs] == [("latent", ["batch", 16])]
    expected = (
        [("output", ["batch", 3, 32, 32])]
        if class_name == "TinyGenerator"
        else [("mean", ["batch", 4]), ("logvar", ["batch", 4])]
    )
    assert [(t.name, t.shape) for t in result.spec.outputs] == expected
    _export(result.spec_path, tmp_path)
