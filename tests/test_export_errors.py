"""Each way an export can go wrong ends in a specific error whose message says what and what instead."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from fixtures.export_builders import (
    make_spec,
    save_module_weights,
    save_text_checkpoint,
    save_vision_checkpoint,
    tensor_spec_fields,
    write_latents,
    write_texts,
)

from triton_bundle.atomic import ArtifactExistsError
from triton_bundle.export.errors import (
    CheckpointError,
    ExportDataError,
    FrozenDimensionError,
    ParityError,
    SourceModuleError,
    UnsupportedOperatorError,
    UnsupportedTaskError,
)
from triton_bundle.export.stage import ONNX_DIR, ONNX_FILE, REJECTED_DIR, export_model


@pytest.fixture(scope="module")
def bert_checkpoint(tmp_path_factory):
    return save_text_checkpoint(tmp_path_factory.mktemp("bert") / "checkpoint", "bert", "text-classification")


@pytest.fixture(scope="module")
def vit_checkpoint(tmp_path_factory):
    return save_vision_checkpoint(tmp_path_factory.mktemp("vit") / "checkpoint", "vit")


@pytest.fixture(scope="module")
def latents(tmp_path_factory):
    return write_latents(tmp_path_factory.mktemp("latents") / "eval.npz", rows=6)


def _text_spec(tmp_path, checkpoint, task="text-classification"):
    texts = write_texts(tmp_path / "texts.jsonl", count=4)
    return make_spec(
        tmp_path, name="broken", task=task, source={"path": str(checkpoint)}, data={"eval": str(texts)}
    )


def _copy(checkpoint, tmp_path):
    return shutil.copytree(checkpoint, tmp_path / "copy")


@pytest.mark.parametrize(
    ("remove", "message"),
    [
        (["model.safetensors"], r"has no weights \(expected model\.safetensors\)"),
        (["config.json"], r"has no config\.json"),
        (["tokenizer.json", "vocab.txt"], r"has no tokenizer files \(expected tokenizer\.json"),
    ],
)
def test_checkpoint_missing_files(bert_checkpoint, tmp_path, remove, message):
    checkpoint = _copy(bert_checkpoint, tmp_path)
    for name in remove:
        (checkpoint / name).unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match=message):
        export_model(_text_spec(tmp_path, checkpoint), tmp_path / "work")


def test_checkpoint_with_only_pickled_weights_is_refused(bert_checkpoint, tmp_path):
    checkpoint = _copy(bert_checkpoint, tmp_path)
    (checkpoint / "model.safetensors").rename(checkpoint / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"only pickled weights \(pytorch_model\.bin\).*allow_pickle"):
        export_model(_text_spec(tmp_path, checkpoint), tmp_path / "work")


def test_vision_checkpoint_without_image_processor_config(vit_checkpoint, tmp_path):
    checkpoint = _copy(vit_checkpoint, tmp_path)
    (checkpoint / "preprocessor_config.json").unlink()
    spec = make_spec(
        tmp_path,
        name="vit",
        task="image-classification",
        source={"path": str(checkpoint)},
        data={"eval": "x"},
    )
    with pytest.raises(
        CheckpointError, match=r"has no image processor config \(expected preprocessor_config\.json"
    ):
        export_model(spec, tmp_path / "work")


def test_task_the_architecture_does_not_support(bert_checkpoint, vit_checkpoint, tmp_path):
    spec = make_spec(
        tmp_path,
        name="bert",
        task="image-classification",
        source={"path": str(bert_checkpoint)},
        data={"eval": "x"},
    )
    with pytest.raises(
        UnsupportedTaskError, match=r"model type 'bert' .* does not support task 'image-classification'"
    ):
        export_model(spec, tmp_path / "work")
    with pytest.raises(
        UnsupportedTaskError, match=r"model type 'vit' .* expected one of .*image-classification"
    ):
        export_model(_text_spec(tmp_path, vit_checkpoint), tmp_path / "work")


def test_torch_module_with_a_huggingface_task(latents, tmp_path):
    fields = tensor_spec_fields(
        tmp_path / "w.safetensors", latents, "TinyGenerator", task="text-classification"
    )
    with pytest.raises(UnsupportedTaskError, match=r"plain nn\.Module uses task 'tensor'"):
        export_model(make_spec(tmp_path, **fields), tmp_path / "work")


def test_torch_module_that_cannot_be_imported(latents, tmp_path):
    fields = tensor_spec_fields(tmp_path / "w.safetensors", latents, "NoSuchModel")
    with pytest.raises(SourceModuleError, match=r"has no attribute 'NoSuchModel'"):
        export_model(make_spec(tmp_path, **fields), tmp_path / "work")
    fields["source"]["module"] = "no_such_package.models:Generator"
    with pytest.raises(SourceModuleError, match=r"cannot import 'no_such_package\.models'"):
        export_model(make_spec(tmp_path, **fields), tmp_path / "work")


def test_weights_that_do_not_fit_the_module(latents, tmp_path):
    weights = save_module_weights(tmp_path / "w.safetensors", "InverseErf")
    fields = tensor_spec_fields(weights, latents, "RunningLogSumExp")
    with pytest.raises(CheckpointError, match=r"does not fit RunningLogSumExp"):
        export_model(make_spec(tmp_path, **fields), tmp_path / "work")


def test_eval_tensors_missing_a_declared_input(tmp_path):
    weights = save_module_weights(tmp_path / "w.safetensors", "TinyGenerator")
    np.savez(tmp_path / "wrong.npz", noise=np.zeros((4, 16), np.float32))
    fields = tensor_spec_fields(weights, tmp_path / "wrong.npz", "TinyGenerator")
    with pytest.raises(ExportDataError, match=r"has no array 'latent' \(it has: \['noise'\]\)"):
        export_model(make_spec(tmp_path, **fields), tmp_path / "work")


def test_existing_artifact_without_force(latents, tmp_path):
    (tmp_path / "work" / ONNX_DIR).mkdir(parents=True)
    (tmp_path / "work" / ONNX_DIR / ONNX_FILE).write_bytes(b"an earlier export")
    fields = tensor_spec_fields(tmp_path / "w.safetensors", latents, "TinyGenerator")
    with pytest.raises(ArtifactExistsError, match=r"already exists; pass --force to replace it"):
        export_model(make_spec(tmp_path, **fields), tmp_path / "work")
    assert (tmp_path / "work" / ONNX_DIR / ONNX_FILE).read_bytes() == b"an earlier export"


@pytest.mark.slow
def test_frozen_batch_dimension_is_detected(latents, tmp_path):
    weights = save_module_weights(tmp_path / "w.safetensors", "BakedBatch")
    fields = tensor_spec_fields(weights, latents, "BakedBatch", export={"fallback": False})
    with pytest.raises(
        FrozenDimensionError, match=r"dim 0 \('batch'\) is 4 when the inputs' 'batch' is 1"
    ) as err:
        export_model(make_spec(tmp_path, **fields), tmp_path / "work")
    assert "torchscript exporter" in str(err.value)
    assert not (tmp_path / "work" / ONNX_DIR).exists()


@pytest.mark.slow
def test_op_no_exporter_can_convert(latents, tmp_path):
    weights = save_module_weights(tmp_path / "w.safetensors", "InverseErf")
    fields = tensor_spec_fields(weights, latents, "InverseErf")
    with pytest.raises(
        UnsupportedOperatorError, match=r"aten::erfinv \(torchscript\); prims\.erf_inv \(dynamo\)"
    ):
        export_model(make_spec(tmp_path, **fields), tmp_path / "work")


@pytest.mark.slow
def test_parity_failure_keeps_the_report_and_writes_no_model(latents, tmp_path):
    weights = save_module_weights(tmp_path / "w.safetensors", "CallCounter")
    fields = tensor_spec_fields(weights, latents, "CallCounter")
    with pytest.raises(ParityError, match=r"failed parity: outputs differ beyond tolerance"):
        export_model(make_spec(tmp_path, **fields), tmp_path / "work")
    assert not (tmp_path / "work" / ONNX_DIR).exists()
    rejected = tmp_path / "work" / REJECTED_DIR
    assert "**FAILED**" in (rejected / "verification.md").read_text()
