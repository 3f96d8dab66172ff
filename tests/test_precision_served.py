"""Image and tensor models end to end with a precision variant: export -> precision (FP16, gated) ->
TensorRT-RTX ahead-of-time check -> model repository serving that variant -> one real local Triton ->
served results against PyTorch, within the spec's budget.

Tiny ViT and the DCGAN-like generator, built from configs in the tests; one server for both.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from fixtures.export_builders import (
    LABELS,
    draw_images,
    make_spec,
    save_module_weights,
    save_vision_checkpoint,
    tensor_spec_fields,
    write_latents,
)

from triton_bundle.manifest import Manifest, sha256_file

pytestmark = pytest.mark.slow
VARIANT = "fp16"


def _through_precision(spec, workdir: Path) -> Path:
    """Export, gate the variant, check it ahead of time (when TensorRT-RTX is installed)."""
    from triton_bundle.engine.stage import build_variant
    from triton_bundle.export.stage import export_model
    from triton_bundle.precision.stage import make_variants

    export_model(spec, workdir)
    result = make_variants(spec, workdir, variants=[VARIANT])
    assert result.reports[VARIANT].passed, result.reports[VARIANT].gate.failures()
    if importlib.util.find_spec("tensorrt_rtx") is not None:
        check = build_variant(spec, workdir, VARIANT, aot=True)
        assert check.passed, check.aot.error
    return result.published[VARIANT] / "model.onnx"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    from triton_bundle.repository.generate import generate_repository
    from triton_bundle.serving.local_triton import LocalTriton, ServerConfig

    root = tmp_path_factory.mktemp("precision-served")
    vit = make_spec(
        root,
        name="tiny-vit",
        task="image-classification",
        source={"path": str(save_vision_checkpoint(root / "vit", "vit"))},
        data={"eval": str(draw_images(root / "eval", 9))},
    )
    latents = write_latents(root / "latents.npz", rows=10)
    gan = make_spec(
        root,
        **tensor_spec_fields(
            save_module_weights(root / "generator.safetensors", "TinyGenerator", width=8),
            latents,
            "TinyGenerator",
            name="tiny-gan",
            module_kwargs={"width": 8},
            outputs=[{"name": "image", "dtype": "float32", "shape": ["batch", 3, 32, 32]}],
            precision={"budget": {"min_psnr_db": 35, "max_abs_error": 0.05}},
        ),
    )
    repos, variants = [], {}
    for spec in (vit, gan):
        workdir = root / f"{spec.name}-work"
        variants[spec.name] = _through_precision(spec, workdir)
        repos.append(
            generate_repository(spec, workdir, out_dir=root / f"{spec.name}-repo", variants=[VARIANT])
        )
    config = ServerConfig(
        repository=repos[0],
        log_file=root / "triton.log",
        extra_args=[f"--model-repository={repo}" for repo in repos[1:]],
    )
    with LocalTriton(config) as server:
        yield {
            "server": server,
            "vit": vit,
            "gan": gan,
            "variants": variants,
            "repos": dict(zip(("vit", "gan"), repos, strict=True)),
        }


def _served_onnx(repo: Path, model: str) -> Path:
    return next((repo / model / "1").glob("*.onnx"))


def test_image_variant_served_labels_match_pytorch(served) -> None:
    import torch
    import transformers

    from triton_bundle.client.client import TritonClient
    from triton_bundle.export.image_data import load_image_paths, read_rgb
    from triton_bundle.repository import contract

    spec = served["vit"]
    repo = served["repos"]["vit"]
    assert sha256_file(_served_onnx(repo, contract.tensor_model(spec.name))) == sha256_file(
        served["variants"][spec.name]
    )  # the gated FP16 graph is what Triton runs
    paths = load_image_paths(spec.resolve(spec.data.eval)).paths
    checkpoint = spec.resolve(spec.source.path)
    processor = transformers.AutoImageProcessor.from_pretrained(checkpoint)
    model = transformers.AutoModelForImageClassification.from_pretrained(checkpoint).eval()
    with torch.no_grad():
        logits = model(**processor([read_rgb(p) for p in paths], return_tensors="pt")).logits
    reference = [LABELS[i] for i in logits.argmax(-1).tolist()]
    with TritonClient(served["server"].http_url, "http") as client:
        results = client.classify_images(contract.ensemble_model(spec.name), paths)
    labels = [r.labels[0] for r in results]
    agreement = np.mean([a == b for a, b in zip(labels, reference, strict=True)])
    assert agreement >= spec.precision.budget.min_label_agreement, (labels, reference)


def test_tensor_variant_served_outputs_match_pytorch(served) -> None:
    import torch

    from triton_bundle.client.client import TritonClient
    from triton_bundle.export.torch_module import build_module
    from triton_bundle.precision.evaluate import OutputError
    from triton_bundle.repository import contract

    spec = served["gan"]
    model_name = contract.tensor_model(spec.name)
    repo = served["repos"]["gan"]
    assert sha256_file(_served_onnx(repo, model_name)) == sha256_file(served["variants"][spec.name])
    latents = np.load(spec.resolve(spec.data.eval))["latent"]
    module, _ = build_module(spec)
    with torch.no_grad():
        expected = module.eval()(torch.from_numpy(latents)).numpy()
    with TritonClient(served["server"].grpc_url, "grpc") as client:
        got = client.infer_tensors(model_name, {"latent": latents})["image"]
    assert got.shape == expected.shape
    mse = float(np.mean((got - expected) ** 2))
    error = OutputError(
        psnr_db=10 * np.log10(float(np.abs(expected).max()) ** 2 / mse),
        max_abs=float(np.abs(got - expected).max()),
    )
    budget = spec.precision.budget
    assert error.psnr_db >= budget.min_psnr_db and error.max_abs <= budget.max_abs_error, error
    record = Manifest.load(spec.resolve(f"{spec.name}-work"), spec.name).stages["repository"]
    assert record.details["versions"] == {"1": VARIANT}
