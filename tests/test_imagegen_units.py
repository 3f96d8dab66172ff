"""Image-generation building blocks: seed -> latent, PNG, PSNR / SSIM, the digit data, spec and client checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from triton_bundle.client.errors import InvalidInputError
from triton_bundle.client.images import request_arrays
from triton_bundle.imagegen import seeds
from triton_bundle.imagegen.metrics import compare_images
from triton_bundle.imagegen.png import decode_png, encode_png, image_grid, to_pil, to_uint8


def test_latent_is_the_documented_pcg64_stream_and_independent_of_the_batch():
    expected = np.random.Generator(np.random.PCG64(7)).standard_normal((4,), dtype=np.float32)
    np.testing.assert_array_equal(seeds.latent_from_seed(7, [4]), expected)
    batch = seeds.latents_for_seeds([3, 7, 9], [4])
    np.testing.assert_array_equal(batch[1], expected)  # row 1 does not depend on its neighbours
    assert not np.array_equal(batch[0], batch[1])


@pytest.mark.parametrize("bad", [-1, 2**63, 1.5, "3", True])
def test_a_seed_must_be_a_non_negative_int64(bad):
    with pytest.raises(seeds.SeedError, match="seed must be"):
        seeds.check_seed(bad)


def test_uint8_png_round_trip_is_lossless_and_range_mapped():
    images = np.stack([np.full((1, 4, 4), -1.0), np.full((1, 4, 4), 1.0), np.full((1, 4, 4), 0.0)]).astype(
        np.float32
    )
    pixels = to_uint8(images, (-1.0, 1.0))
    assert pixels.shape == (3, 4, 4, 1)
    assert [int(p.max()) for p in pixels] == [0, 255, 128]
    np.testing.assert_array_equal(decode_png(encode_png(pixels[2])), pixels[2])
    grid = image_grid([to_pil(p) for p in pixels], columns=2, scale=2, pad=1)
    assert grid.size == (2 * 9 + 1, 2 * 9 + 1)


def test_quality_metrics_separate_identical_from_noisy_images():
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 256, (4, 16, 16, 1), dtype=np.uint8)
    same = compare_images(reference, reference.copy())
    assert math.isinf(same.psnr_db) and same.ssim == pytest.approx(1.0)
    noisy = np.clip(reference.astype(int) + rng.integers(-40, 41, reference.shape), 0, 255).astype(np.uint8)
    worse = compare_images(reference, noisy)
    assert 10 < worse.psnr_db < 30 and worse.ssim < 0.99


@pytest.mark.slow  # trains the classifier (~10 s)
def test_digits_split_and_classifier_recognise_held_out_digits():
    from triton_bundle.imagegen.classifier import digit_classifier
    from triton_bundle.imagegen.digits import load_digit_images

    train, held = load_digit_images(16, "train"), load_digit_images(16, "heldout")
    assert len(train) + len(held) == 1797 and train.images.shape[1:] == (1, 16, 16)
    assert train.images.min() >= -1 and train.images.max() <= 1
    assert digit_classifier(16).heldout_accuracy > 0.9


def test_the_client_checks_seeds_and_labels_before_sending():
    arrays = request_arrays([1, 2], class_labels=7)
    assert arrays["seed"].dtype == np.int64 and arrays["class_label"].tolist() == [[7], [7]]
    with pytest.raises(InvalidInputError, match="must be an integer"):
        request_arrays([1.5])
    with pytest.raises(InvalidInputError, match="one per seed"):
        request_arrays([1, 2, 3], class_labels=[1, 2])
    with pytest.raises(InvalidInputError, match="no seeds"):
        request_arrays([])


def test_spec_requires_an_image_section_for_image_tasks(tmp_path):
    from triton_bundle.spec import SpecError, load_spec

    path = tmp_path / "spec.yaml"
    path.write_text("name: g\ntask: image-generation\nsource: {kind: torch-module, module: m:C}\n")
    with pytest.raises(SpecError, match="needs an 'image' section"):
        load_spec(path)
    path.write_text("name: c\ntask: text-classification\nsource: {path: x}\n")
    with pytest.raises(SpecError, match="'data' is required"):
        load_spec(path)


def test_the_seed_workload_draws_fresh_int64_seeds_and_known_classes():
    import random

    from fixtures.imagegen import tiny_spec

    from triton_bundle.loadtest.workload import workload_for

    workload = workload_for(tiny_spec("conv"))
    assert workload.kind == "seed" and workload.expected_inputs() == {"seed": "INT64", "class_label": "INT64"}
    seed, label = workload.make_batch(random.Random(0), 5)
    assert seed.array.shape == (5, 1) and seed.array.dtype == np.int64 and len(set(seed.array.ravel())) == 5
    assert label.array.dtype == np.int64 and label.array.min() >= 0 and label.array.max() < 10


@pytest.mark.parametrize("module", ["triton_bundle.pipeline.image_demo", "benchmarks.images"])
def test_the_image_demo_and_benchmark_import_against_the_current_library(module):
    """Neither runs in the fast suite (minutes of training): at least their imports must keep up with main."""
    import importlib

    assert callable(
        getattr(importlib.import_module(module), "run_image_demo" if "demo" in module else "main")
    )
