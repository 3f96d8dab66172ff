"""Diffusion end to end on two tiny UNet2DModel configurations: trained and saved with save_pretrained,
exported with parity, served by a real local Triton (the sampling loop calls the UNet through BLS) with
images equal to diffusers' at the same seeds over HTTP and gRPC, bad requests refused one by one,
FP16 / INT8 variants gated on the images, the quality-vs-steps table, and the nvidia target's config."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import pytest
import requests

from triton_bundle.client.errors import InvalidInputError
from triton_bundle.client.images import ImageGenerator
from triton_bundle.diffusion import unet as du
from triton_bundle.imagegen.metrics import psnr
from triton_bundle.imagegen.png import to_uint8
from triton_bundle.imagegen.seeds import latents_for_seeds
from triton_bundle.manifest import Manifest

pytestmark = pytest.mark.slow


def _reference(spec, workdir, seeds, labels, steps):
    """diffusers' DDIMScheduler + the PyTorch UNet, from the same seed-drawn noise: uint8 HWC."""
    checkpoint = Manifest.load(workdir, spec.name).stages["export"].artifact("checkpoint")
    noise = latents_for_seeds(seeds, spec.image.latent_shape)
    images = du.diffusers_sample(
        du.load_unet(checkpoint), du.load_scheduler(checkpoint), noise, np.array(labels), steps
    )
    return to_uint8(images, spec.image.value_range)


def test_checkpoint_is_safetensors_and_export_parity_holds(diffusion_workdir):
    spec, workdir = diffusion_workdir
    manifest = Manifest.load(workdir, spec.name)
    checkpoint = manifest.stages["export"].artifact("checkpoint")
    assert (checkpoint / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert not list(checkpoint.rglob("*.bin")) and not list(checkpoint.rglob("*.pt"))
    assert du.load_unet(checkpoint).config.num_class_embeds == 10
    record = manifest.stages["export"]
    assert record.metrics["max_abs"] <= spec.export.tolerances.max_abs
    assert record.metrics["image_psnr_db"] >= spec.image.min_parity_psnr_db
    report = json.loads(record.artifact("report").read_text())
    assert report["passed"] and {c.split()[0] for c in report["cases"]} == {
        f"t={t}" for t in spec.diffusion.parity_timesteps
    }
    graph = onnx.load(str(record.artifact("onnx")))
    dims = {
        i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.graph.input
    }
    assert dims == {"sample": ["batch", 1, 16, 16], "timestep": ["batch", 1], "class_labels": ["batch", 1]}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_served_images_equal_diffusers_at_same_seeds(diffusion_server, protocol):
    spec, workdir, server = diffusion_server
    url = f"http://{server.http_url}" if protocol == "http" else f"grpc://{server.grpc_url}"
    seeds, labels = [3, 4, 5], [7, 7, 2]
    for steps in (None, 3):
        got = ImageGenerator(url).generate_arrays(spec.name, seeds, class_labels=labels, steps=steps)
        want = _reference(spec, workdir, seeds, labels, steps or spec.diffusion.steps)
        assert psnr(want, got.pixels) >= spec.image.min_parity_psnr_db
        assert len(got.png) == 3 and all(p.startswith(b"\x89PNG") for p in got.png)


def _unet_counts(server, spec) -> tuple[int, int]:
    """(rows inferred, executions) of the UNet model so far, from Triton's statistics."""
    url = f"http://{server.http_url}/v2/models/{spec.name}_model/stats"
    stats = requests.get(url, timeout=10).json()["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])


def test_concurrent_requests_with_different_steps_each_get_their_own_image(diffusion_server):
    """Requests denoised together (one UNet batch per step) stay independent, and they do batch: the
    UNet ran fewer times than it denoised rows."""
    spec, workdir, server = diffusion_server
    client = ImageGenerator(f"grpc://{server.grpc_url}")
    asks = [(seed, seed % 10, steps) for seed, steps in zip(range(10, 16), [2, 5, 8, 2, 12, 1], strict=True)]
    rows_before, runs_before = _unet_counts(server, spec)
    with ThreadPoolExecutor(len(asks)) as pool:
        results = list(
            pool.map(
                lambda a: client.generate_arrays(spec.name, [a[0]], class_labels=[a[1]], steps=a[2]), asks
            )
        )
    rows, runs = _unet_counts(server, spec)
    assert rows - rows_before == sum(a[2] for a in asks)  # one UNet row per image per step
    assert runs - runs_before < rows - rows_before, "no two requests' steps ever shared a UNet batch"
    for (seed, label, steps), got in zip(asks, results, strict=True):
        assert (
            psnr(_reference(spec, workdir, [seed], [label], steps), got.pixels)
            >= spec.image.min_parity_psnr_db
        )


def _infer(server, spec, inputs):
    return requests.post(
        f"http://{server.http_url}/v2/models/{spec.name}/infer", json={"inputs": inputs}, timeout=60
    )


def _tensor(name, datatype, values):
    return {"name": name, "datatype": datatype, "shape": [len(values), 1], "data": values}


def test_bad_requests_get_400_and_the_server_stays_ready(diffusion_server):
    spec, _, server = diffusion_server
    too_many = spec.repository.max_batch_size + 1
    cases = {
        "steps": [_tensor("seed", "INT64", [1]), _tensor("steps", "INT32", [spec.diffusion.max_steps + 1])],
        "class label": [_tensor("seed", "INT64", [1]), _tensor("class_label", "INT64", [10])],
        "seed": [_tensor("seed", "INT64", [-5])],
        "batch": [_tensor("seed", "INT64", list(range(too_many)))],
    }
    for what, inputs in cases.items():
        reply = _infer(server, spec, inputs)
        assert reply.status_code == 400, (what, reply.text)
        assert what.split()[0] in reply.json()["error"].lower() or what == "batch", reply.text
    reply = _infer(server, spec, [{"name": "seed", "datatype": "FP32", "shape": [1, 1], "data": [1.5]}])
    assert reply.status_code == 400 and "INT64" in reply.text  # a seed that is not an integer
    assert requests.get(f"http://{server.http_url}/v2/health/ready", timeout=10).status_code == 200
    with pytest.raises(InvalidInputError, match="unknown class label 12"):
        ImageGenerator(f"http://{server.http_url}").generate_arrays(spec.name, [1], class_labels=[12])
    good = ImageGenerator(f"http://{server.http_url}").generate_arrays(
        spec.name, [1], class_labels=[1], steps=2
    )
    assert good.pixels.shape == (1, 16, 16, 1)


def test_precision_gates_and_steps_table(diffusion_workdir, tmp_path):
    """FP16 passes; INT8 on every op (time embedding and norms included) is rejected with its reason;
    the steps table compares each step count with the most steps listed."""
    import shutil

    from triton_bundle.precision.stage import make_variants

    spec, source = diffusion_workdir
    workdir = tmp_path / "artifacts"
    shutil.copytree(source, workdir)
    spec = spec.model_copy(deep=True)
    spec.precision.quantize_all = True
    spec.precision.budget.min_psnr_db = 45.0  # the tiny UNet's FP16 images differ by ~60 dB, INT8-all by ~35
    result = make_variants(spec, workdir, ["fp16", "int8"])
    assert result.reports["fp16"].passed, result.reports["fp16"].notes
    bad = result.reports["int8"]
    assert not bad.passed and any(n.startswith("rejected: psnr_db") for n in bad.notes), bad.notes
    assert "int8" in result.rejected and "int8" not in result.published
    record = Manifest.load(workdir, spec.name).stages["precision"]
    rows = record.details["steps_table"]
    assert [r["steps"] for r in rows] == sorted(spec.diffusion.steps_table)
    assert rows[-1]["psnr_db"] == 100.0 and rows[0]["psnr_db"] < rows[-1]["psnr_db"]
    assert all(r["seconds_per_image"] > 0 for r in rows)


def test_nvidia_target_serves_the_unet_with_the_same_orchestration(diffusion_workdir, tmp_path):
    from triton_bundle.repository.generate import generate_repository
    from triton_bundle.repository.layout import read_config

    spec, workdir = diffusion_workdir
    out = generate_repository(spec, workdir, out_dir=tmp_path / "repo", target="nvidia")
    sampler = read_config(out / f"{spec.name}_sampler" / "config.pbtxt")
    unet = read_config(out / f"{spec.name}_model" / "config.pbtxt")
    assert sampler.parameters["unet_model"].string_value == unet.name
    assert (out / f"{spec.name}_sampler" / "1" / "ddim.py").is_file()
    assert unet.backend != "python" and unet.dynamic_batching is not None
