"""`triton-bundle export SPEC`: a rich parity table on success, one red line and exit 2 on failure."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from fixtures.export_builders import save_module_weights, tensor_spec_fields, write_latents, write_spec_yaml

pytestmark = pytest.mark.slow


def _export(spec_path, workdir, *extra):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    command = [sys.executable, "-m", "triton_bundle.cli", "export", str(spec_path), "--workdir", str(workdir)]
    return subprocess.run([*command, *extra], capture_output=True, text=True, env=env, timeout=600)


def test_cli_exports_and_prints_the_parity_table(tmp_path):
    weights = save_module_weights(tmp_path / "generator.safetensors", "TinyGenerator")
    latents = write_latents(tmp_path / "latents.npz", rows=6)
    fields = tensor_spec_fields(weights, latents, "TinyGenerator", name="gan")
    spec_path = write_spec_yaml(tmp_path / "spec.yaml", **fields)

    done = _export(spec_path, tmp_path / "work")
    assert done.returncode == 0, done.stderr
    assert "ONNX parity (torchscript exporter, opset 17, 6 real examples)" in done.stdout
    assert "max: batch 8" in done.stdout
    assert "graph clean-up (onnxslim) kept" in done.stdout
    assert (tmp_path / "work" / "onnx" / "model.onnx").is_file()

    again = _export(spec_path, tmp_path / "work")
    assert again.returncode == 2
    assert "already exists; pass --force" in again.stderr
    assert "Traceback" not in again.stderr


def test_cli_exits_non_zero_when_parity_fails(tmp_path):
    weights = save_module_weights(tmp_path / "counter.safetensors", "CallCounter")
    latents = write_latents(tmp_path / "latents.npz", rows=4)
    spec_path = write_spec_yaml(tmp_path / "spec.yaml", **tensor_spec_fields(weights, latents, "CallCounter"))

    done = _export(spec_path, tmp_path / "work")

    assert done.returncode == 2
    assert "failed parity: outputs differ beyond tolerance" in done.stderr
    assert "Traceback" not in done.stderr
    assert (tmp_path / "work" / "onnx-rejected" / "verification.json").is_file()
