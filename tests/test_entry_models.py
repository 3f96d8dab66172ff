"""Every command calls the model the generated repository serves for the spec's task (its entry model):
the ensemble `<name>` for text, token and image tasks, the tensor model `<name>_model` for task 'tensor'."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.export_builders import (
    make_spec,
    save_module_weights,
    tensor_spec_fields,
    write_latents,
    write_spec_yaml,
)

from triton_bundle.client.cli import _model_name
from triton_bundle.loadtest.stage import Overrides, build_settings
from triton_bundle.repository import contract

TEXT = {"source": {"path": "ckpt"}, "data": {"eval": "eval.jsonl"}}
TASKS = {
    "text-classification": TEXT,
    "token-classification": TEXT,
    "feature-extraction": TEXT,
    "image-classification": TEXT,
    "tensor": {
        "source": {"kind": "torch-module", "module": "m.py:M"},
        "data": {"eval": "eval.npz"},
        "inputs": [{"name": "latent", "dtype": "float32", "shape": ["batch", 16]}],
    },
    "image-generation": {  # no data section: the digits come from scikit-learn
        "source": {"kind": "torch-module", "module": "triton_bundle.imagegen.models:ConvGenerator"},
        "image": {"latent_shape": [32]},
        "labels": [str(i) for i in range(10)],
    },
    "diffusion": {  # the finetune stage trains the UNet on the digits (diffusion section)
        "finetune": {},
        "image": {"latent_shape": [1, 16, 16]},
        "labels": [str(i) for i in range(10)],
    },
}
SERVED = {  # what the repository plan names the model clients call, per task
    "text-classification": "demo",
    "token-classification": "demo",
    "feature-extraction": "demo",
    "image-classification": "demo",
    "tensor": "demo_model",
    "image-generation": "demo",
    "diffusion": "demo",
}


@pytest.mark.parametrize("task", list(TASKS))
def test_infer_loadtest_and_capacity_default_to_the_entry_model(task: str, tmp_path: Path) -> None:
    fields = {"name": "demo", "task": task, **TASKS[task]}
    spec = make_spec(tmp_path, **fields)
    # loadtest, capacity and loadtest-compare all build their settings here.
    assert build_settings(spec, Overrides(), tmp_path / "run").model == SERVED[task]
    assert build_settings(spec, Overrides(model="other"), tmp_path / "run").model == "other"
    # infer --spec
    assert _model_name(None, write_spec_yaml(tmp_path / "spec.yaml", **fields)) == SERVED[task]
    # the demo and the benchmarks ask the contract directly
    assert contract.entry_model(spec.name, task) == SERVED[task]


@pytest.mark.slow
def test_tensor_loadtest_drives_the_served_tensor_model_with_npz_rows(tmp_path: Path) -> None:
    """A tensor spec straight through export -> repository -> serve -> loadtest with no --model."""
    from triton_bundle.export.stage import export_model
    from triton_bundle.loadtest.settings import Endpoint
    from triton_bundle.loadtest.stage import loadtest_stage
    from triton_bundle.manifest import Manifest
    from triton_bundle.repository.generate import generate_repository
    from triton_bundle.serving.local_triton import LocalTriton, ServerConfig

    latents = write_latents(tmp_path / "eval.npz", rows=10)
    weights = save_module_weights(tmp_path / "generator.safetensors", "TinyGenerator", width=8)
    fields = tensor_spec_fields(
        weights, latents, "TinyGenerator", name="tiny-gan", module_kwargs={"width": 8}
    )
    spec = make_spec(tmp_path, **fields)
    workdir = tmp_path / "artifacts"
    export_model(spec, workdir)
    repository = generate_repository(spec, workdir, out_dir=tmp_path / "repo")

    config = ServerConfig(repository=repository, log_file=tmp_path / "triton.log")
    with LocalTriton(config) as server:
        endpoint = Endpoint(
            protocol="http", url=server.http_url, metrics_url=server.metrics_url, http_url=server.http_url
        )
        run = loadtest_stage(
            spec, workdir, Overrides(users=2, duration_s=20, max_requests=40), endpoint=endpoint
        )
    assert run.client.failures == 0 and run.client.requests == 40, run.gate.explain()
    assert (repository / run.settings.model).is_dir()
    assert "10 rows of eval.npz" in run.workload_source
    entry = contract.tensor_model(spec.name)
    assert {m.model: m.requests for m in run.server.models}.get(entry, 0) >= 40
    record = Manifest.load(workdir, spec.name).require("repository", "test")
    assert record.details["models"]["entry"] == entry == run.settings.model
