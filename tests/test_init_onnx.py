"""An ONNX file as the source: `init` reads the graph, `export` checks and adopts it unedited."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from fixtures.export_builders import MODELS_FILE, save_module_weights, write_latents
from onnx import TensorProto, helper

from triton_bundle.data import DataError
from triton_bundle.export.errors import ExportError, FrozenDimensionError
from triton_bundle.export.stage import export_model
from triton_bundle.export.torch_module import import_class
from triton_bundle.init.stage import InitError, InitOptions, init_spec
from triton_bundle.manifest import Manifest
from triton_bundle.spec import load_spec


def _pooled_graph(path, frozen_sequence: bool = False):
    """tokens [batch, seq_len, 8] -> mean over seq_len -> @W + b -> scores [batch, 4]; plus a mask input."""
    rng = np.random.default_rng(0)
    seq = 6 if frozen_sequence else "seq_len"
    tokens = helper.make_tensor_value_info("tokens", TensorProto.FLOAT, ["batch_size", seq, 8])
    scale = helper.make_tensor_value_info("scale", TensorProto.FLOAT, ["batch_size", 1])
    scores = helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch_size", 4])
    weights = helper.make_tensor("W", TensorProto.FLOAT, [8, 4], rng.standard_normal(32).astype(np.float32))
    nodes = [
        helper.make_node("ReduceMean", ["tokens", "axes"], ["pooled"], keepdims=0),
        helper.make_node("MatMul", ["pooled", "W"], ["projected"]),
        helper.make_node("Mul", ["projected", "scale"], ["scores"]),
    ]
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(nodes, "pooled", [tokens, scale], [scores], initializer=[weights, axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, str(path))
    return path


def _sample(path, rows=5, seq=6):
    rng = np.random.default_rng(1)
    np.savez(path, tokens=rng.standard_normal((rows, seq, 8)).astype(np.float32),
             scale=np.ones((rows, 1), np.float32))  # fmt: skip
    return path


def _export(spec_path, tmp_path):
    spec = load_spec(spec_path)
    result = export_model(spec, tmp_path / "work")
    return spec, result, Manifest.load(tmp_path / "work", spec.name).require("export", "export")


def test_a_handmade_graph_round_trips_with_named_dims(tmp_path):
    model = _pooled_graph(tmp_path / "pooled.onnx")
    result = init_spec(
        InitOptions(checkpoint=model, data=_sample(tmp_path / "s.npz"), out=tmp_path / "spec.yaml")
    )
    spec = result.spec
    assert spec.source.kind == "onnx" and spec.task == "tensor"
    assert [(t.name, t.shape) for t in spec.inputs] == [
        ("tokens", ["batch", "sequence", 8]),
        ("scale", ["batch", 1]),
    ]
    assert [(t.name, t.shape) for t in spec.outputs] == [("scores", ["batch", 4])]
    assert (spec.shapes.sequence.opt, spec.shapes.sequence.max) == (6, 6)  # what the sample vouches for
    spec, exported, record = _export(result.spec_path, tmp_path)
    assert exported.report.passed and exported.report.exporter == "imported"
    assert "parity is not proven" in " ".join(exported.report.notes)
    assert record.details["input_names"] == ["tokens", "scale"]
    assert record.details["graph_inputs"]["tokens"][0] == "batch_size"  # the file's own names are kept
    assert onnx.load(str(exported.onnx)).graph.node[0].op_type == "ReduceMean"


@pytest.mark.slow
def test_a_torch_exported_generator_round_trips(tmp_path):
    import torch
    from safetensors.torch import load_file

    save_module_weights(tmp_path / "w.safetensors", "TinyGenerator")
    module = import_class(f"{MODELS_FILE}:TinyGenerator", tmp_path)()
    module.load_state_dict(load_file(str(tmp_path / "w.safetensors")))
    torch.onnx.export(
        module.eval(), (torch.randn(2, 16),), str(tmp_path / "gen.onnx"), input_names=["latent"],
        output_names=["image"], dynamic_axes={"latent": {0: "n"}, "image": {0: "n"}}, dynamo=False,
    )  # fmt: skip
    latents = write_latents(tmp_path / "latents.npz")
    result = init_spec(
        InitOptions(checkpoint=tmp_path / "gen.onnx", data=latents, out=tmp_path / "spec.yaml")
    )
    assert [(t.name, t.shape) for t in result.spec.outputs] == [("image", ["batch", 3, 32, 32])]
    _, exported, _ = _export(result.spec_path, tmp_path)
    assert exported.report.passed


def test_a_sample_without_an_input_names_what_it_has(tmp_path):
    model = _pooled_graph(tmp_path / "pooled.onnx")
    np.savez(tmp_path / "bad.npz", tokens=np.zeros((2, 6, 8), np.float32))
    with pytest.raises(DataError, match=r"no array for input\(s\) \['scale'\].*it has: \['tokens'\]"):
        init_spec(InitOptions(checkpoint=model, data=tmp_path / "bad.npz", out=tmp_path / "spec.yaml"))
    assert not (tmp_path / "spec.yaml").exists()


def test_a_graph_that_fails_on_its_sample_is_refused_before_writing(tmp_path):
    model = _pooled_graph(tmp_path / "pooled.onnx")
    np.savez(tmp_path / "bad.npz", tokens=np.zeros((2, 6, 5), np.float32), scale=np.ones((2, 1), np.float32))
    with pytest.raises(InitError, match=r"does not run on the sample"):
        init_spec(InitOptions(checkpoint=model, data=tmp_path / "bad.npz", out=tmp_path / "spec.yaml"))


def test_export_refuses_a_frozen_dim_and_a_renamed_input(tmp_path):
    good = _pooled_graph(tmp_path / "pooled.onnx")
    result = init_spec(
        InitOptions(checkpoint=good, data=_sample(tmp_path / "s.npz"), out=tmp_path / "spec.yaml")
    )
    _pooled_graph(good, frozen_sequence=True)  # the file changes under the spec: sequence now fixed at 6
    with pytest.raises(FrozenDimensionError, match="'sequence'"):
        _export(result.spec_path, tmp_path)
    text = result.spec_path.read_text().replace("name: scale", "name: gain")
    result.spec_path.write_text(text)
    with pytest.raises(ExportError, match=r"takes inputs \['scale', 'tokens'\] but the spec declares"):
        _export(result.spec_path, tmp_path)
    assert not (tmp_path / "work" / "onnx").exists()  # nothing adopted
