"""Image generation end to end, per generator family (conv-transpose, MLP): finetune -> export parity ->
gated FP16 / INT8 -> repository -> a real local Triton, over HTTP and gRPC, against PyTorch's images."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures.imagegen import FAMILIES, tiny_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session", params=sorted(FAMILIES))
def image_workdir(request, tmp_path_factory):
    """(spec, workdir): a tiny generator of the family, trained and exported."""
    from fixtures.serving import exported

    spec = tiny_spec(request.param)
    workdir = tmp_path_factory.mktemp(f"imagegen-{request.param}") / "artifacts"
    return exported(spec, workdir)


@pytest.fixture(scope="session")
def image_server(image_workdir):
    from fixtures.serving import served

    with served(*image_workdir) as running:
        yield running


def _pytorch_pixels(spec, workdir, seeds, labels):
    from triton_bundle.imagegen.export import load_generator
    from triton_bundle.imagegen.png import to_uint8
    from triton_bundle.imagegen.train import generate
    from triton_bundle.manifest import Manifest

    generator, _ = load_generator(spec, Manifest.load(workdir, spec.name))
    return to_uint8(generate(generator, seeds, labels, spec.image.latent_shape), spec.image.value_range)


def test_export_has_a_dynamic_batch_and_matches_pytorch(image_workdir):
    import onnxruntime as ort

    from triton_bundle.imagegen.export import gate_inputs
    from triton_bundle.manifest import Manifest

    spec, workdir = image_workdir
    record = Manifest.load(workdir, spec.name).stages["export"]
    session = ort.InferenceSession(str(record.artifact("onnx")), providers=["CPUExecutionProvider"])
    feeds = gate_inputs(spec, [5, 6, 7])  # batch 3: not a size the export traced
    images = session.run(["image"], feeds)[0]
    assert images.shape == (3, 1, 16, 16)
    from triton_bundle.imagegen.png import to_uint8

    expected = _pytorch_pixels(spec, workdir, [5, 6, 7], feeds["class_label"].reshape(-1).tolist())
    assert np.abs(to_uint8(images).astype(int) - expected.astype(int)).max() <= 1


def test_precision_gate_passes_fp16_and_rejects_int8_below_its_budget_with_the_reason(image_workdir):
    from triton_bundle.precision.stage import make_variants

    spec, workdir = image_workdir
    strict = spec.model_copy(deep=True)
    strict.precision.quantize_all = True  # INT8 on every op
    strict.precision.budget.min_psnr_db = 55.0  # FP16 rounding stays above it, INT8 on every op cannot
    result = make_variants(strict, workdir, ["fp16", "int8"], force=True)
    assert result.reports["fp16"].passed, result.reports["fp16"].gate.failures()
    bad = result.reports["int8"]
    assert not bad.passed and "int8" in result.rejected
    assert any(f.startswith("psnr_db") and "needs >= 55" in f for f in bad.gate.failures())
    assert bad.metrics.label_agreement is not None  # the digit classifier's verdict is recorded too


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_served_images_equal_pytorch_and_a_seed_always_gives_the_same_image(image_server, protocol):
    from triton_bundle.client.images import ImageGenerator

    spec, workdir, server = image_server
    client = ImageGenerator(f"{protocol}://{server.http_url if protocol == 'http' else server.grpc_url}")
    seeds, labels = [3, 11, 4, 1], [7, 7, 0, 9]
    served = client.generate_arrays(spec.name, seeds, labels)
    np.testing.assert_array_equal(served.pixels, _pytorch_pixels(spec, workdir, seeds, labels))
    alone = client.generate_arrays(spec.name, [11], [7])  # another batch composition, same image
    np.testing.assert_array_equal(alone.pixels[0], served.pixels[1])
    assert all(p.startswith(b"\x89PNG") for p in served.png)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_bad_requests_get_a_clear_400_and_the_server_stays_ready(image_server, protocol):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    from triton_bundle.client.errors import InvalidInputError
    from triton_bundle.client.images import ImageGenerator

    spec, _, server = image_server
    url = server.http_url if protocol == "http" else server.grpc_url
    client = ImageGenerator(f"{protocol}://{url}")
    with pytest.raises(InvalidInputError, match=r"unknown class_label 10: expected 0\.\.9"):
        client.generate_arrays(spec.name, [1, 2], [3, 10])
    with pytest.raises(InvalidInputError, match="batch-size must be <= 8"):
        client.generate_arrays(spec.name, list(range(9)))
    module = httpclient if protocol == "http" else grpcclient
    raw = module.InferenceServerClient(url)
    seed = module.InferInput("seed", [1, 1], "FP32")  # not an integer
    seed.set_data_from_numpy(np.array([[1.5]], dtype=np.float32))
    with pytest.raises(InferenceServerException, match=r"(?i)data-type|datatype|FP32"):
        raw.infer(spec.name, [seed])
    assert raw.is_server_ready()
    assert client.generate_arrays(spec.name, [1], [2]).pixels.shape == (1, 16, 16, 1)


def test_generate_image_cli_writes_one_image_or_a_grid(image_server, tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from triton_bundle.cli import app

    spec, _, server = image_server
    url = f"grpc://{server.grpc_url}"
    one, grid = tmp_path / "one.png", tmp_path / "grid.png"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "generate-image",
            "--url",
            url,
            "--model",
            spec.name,
            "--seed",
            "1",
            "--label",
            "7",
            "--out",
            str(one),
            "--scale",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert Image.open(one).size == (32, 32)
    args = ["generate-image", "--url", url, "--model", spec.name, "--out", str(grid), "--columns", "2"]
    result = runner.invoke(app, [*args, "--seed", "1", "--seed", "2", "--seed", "3", "-l", "7"])
    assert result.exit_code == 0, result.output
    assert Image.open(grid).size == (2 * 18 + 2, 2 * 18 + 2)  # 2 columns x 2 rows of 16 px + 2 px padding


def test_locust_load_test_sends_random_seeds_and_passes_the_slo_gate(image_server):
    """The load-test stage drives the image ensemble with a seed workload (real Locust, gRPC)."""
    from triton_bundle.loadtest.settings import Endpoint
    from triton_bundle.loadtest.stage import Overrides, loadtest_stage

    spec, workdir, server = image_server
    endpoint = Endpoint(
        protocol="grpc", url=server.grpc_url, metrics_url=server.metrics_url, http_url=server.http_url
    )
    run = loadtest_stage(spec, workdir, Overrides(users=2, duration_s=20, max_requests=30), endpoint=endpoint)
    assert run.client.failures == 0 and run.client.requests == 30, run.gate.explain()
    assert run.settings.model == spec.name and run.workload_source == "random seeds"
    assert {m.model: m.requests for m in run.server.models}.get(f"{spec.name}_latent", 0) >= 30


def test_the_nvidia_target_keeps_the_ensemble_and_puts_the_generator_on_the_gpu(image_workdir, tmp_path):
    """Without engines the generator runs ONNX on the GPU (onnxruntime); latent and PNG stay Python on CPU."""
    from tritonclient.grpc import model_config_pb2 as mc

    from triton_bundle.repository.generate import generate_repository
    from triton_bundle.repository.layout import read_config
    from triton_bundle.repository.validate import validate_repository

    spec, workdir = image_workdir
    repository = generate_repository(spec, workdir, out_dir=tmp_path / "repo", target="nvidia", force=True)
    assert validate_repository(repository) == []
    model = read_config(repository / f"{spec.name}_model" / "config.pbtxt")
    assert (
        model.platform == "onnxruntime_onnx"
        and model.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    )
    ensemble = read_config(repository / spec.name / "config.pbtxt")
    steps = [s.model_name for s in ensemble.ensemble_scheduling.step]
    assert steps == [f"{spec.name}_latent", f"{spec.name}_model", f"{spec.name}_png"]


def test_an_unconditional_generator_serves_seeds_alone_and_refuses_a_class_label(tmp_path):
    """No labels in the spec: the graph takes the latent only, the ensemble the seed only."""
    from fixtures.imagegen import unconditional_spec

    from triton_bundle.client.errors import InvalidInputError
    from triton_bundle.client.images import ImageGenerator
    from triton_bundle.export.stage import export_model
    from triton_bundle.repository.generate import generate_repository
    from triton_bundle.serving.local_triton import LocalTriton, ServerConfig

    spec, workdir = unconditional_spec(tmp_path / "weights"), tmp_path / "artifacts"
    exported = export_model(spec, workdir)
    assert exported.report.passed and set(exported.report.dynamic_axes) == {"latent", "image"}
    repository = generate_repository(spec, workdir, out_dir=tmp_path / "repo")
    with LocalTriton(ServerConfig(repository=repository, log_file=tmp_path / "triton.log")) as server:
        client = ImageGenerator(f"grpc://{server.grpc_url}")
        served = client.generate_arrays(spec.name, [4, 5])
        np.testing.assert_array_equal(served.pixels, _pytorch_pixels(spec, workdir, [4, 5], None))
        with pytest.raises(InvalidInputError, match="unconditional: leave out class_label"):
            client.generate_arrays(spec.name, [4], [1])
