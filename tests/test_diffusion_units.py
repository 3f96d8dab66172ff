"""The served DDIM loop's maths (numpy, shipped beside the orchestration model) against diffusers'
DDIMScheduler, and the diffusion spec's checks. No server, no training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from triton_bundle.diffusion.ddim import DDIMSchedule, sample
from triton_bundle.diffusion.unet import ddim_schedule
from triton_bundle.spec import DiffusionSpec


def _scheduler(beta_schedule: str):
    from diffusers import DDIMScheduler

    return DDIMScheduler(num_train_timesteps=1000, beta_schedule=beta_schedule, clip_sample=True)


def _fake_unet(x, t, labels):
    """A deterministic stand-in for the UNet's noise prediction that depends on every input."""
    return np.tanh(x * 0.7 + t.reshape(-1, 1, 1, 1) / 1000.0 - labels.reshape(-1, 1, 1, 1) * 0.05).astype(
        np.float32
    )


@pytest.mark.parametrize("beta_schedule", ["linear", "squaredcos_cap_v2"])
@pytest.mark.parametrize("steps", [1, 7, 20, 50])
def test_numpy_ddim_matches_diffusers(beta_schedule, steps):
    scheduler = _scheduler(beta_schedule)
    schedule = ddim_schedule(scheduler)
    scheduler.set_timesteps(steps)
    assert schedule.timesteps(steps).tolist() == scheduler.timesteps.tolist()
    rng = np.random.default_rng(steps)
    noise = rng.standard_normal((3, 1, 8, 8), dtype=np.float32)
    labels = np.array([0, 4, 9])
    x = torch.from_numpy(noise.copy())
    for t in scheduler.timesteps:
        t_rows = np.full((3, 1), int(t), np.int64)
        eps = torch.from_numpy(_fake_unet(x.numpy(), t_rows, labels.reshape(-1, 1)))
        x = scheduler.step(eps, t, x, eta=0.0).prev_sample
    ours = sample(_fake_unet, schedule, noise, labels, np.full(3, steps))
    np.testing.assert_allclose(ours, x.numpy(), atol=2e-5)


def test_rows_with_different_steps_equal_their_own_runs():
    """One loop serving requests that asked for different step counts gives each what it would get alone."""
    schedule = ddim_schedule(_scheduler("linear"))
    noise = np.random.default_rng(0).standard_normal((3, 1, 8, 8), dtype=np.float32)
    labels = np.array([1, 2, 3])
    together = sample(_fake_unet, schedule, noise, labels, np.array([3, 10, 5]))
    for row, steps in enumerate([3, 10, 5]):
        alone = sample(_fake_unet, schedule, noise[row : row + 1], labels[row : row + 1], np.array([steps]))
        np.testing.assert_allclose(together[row], alone[0], atol=1e-6)


def test_schedule_round_trips_through_json():
    schedule = ddim_schedule(_scheduler("squaredcos_cap_v2"))
    again = DDIMSchedule.from_json(schedule.to_json())
    np.testing.assert_array_equal(again.alphas_cumprod, schedule.alphas_cumprod)
    assert again.final_alpha_cumprod == schedule.final_alpha_cumprod and again.clip_sample


def test_schedule_refuses_steps_beyond_training_timesteps():
    schedule = ddim_schedule(_scheduler("linear"))
    with pytest.raises(ValueError, match=r"steps must be in \[1, 1000\], got 1001"):
        schedule.timesteps(1001)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"steps": 60, "max_steps": 50}, "min_steps <= steps <= max_steps"),
        ({"block_out_channels": [12, 32], "norm_num_groups": 8}, "multiples of norm_num_groups"),
        ({"parity_timesteps": [1000]}, "below num_train_timesteps"),
    ],
)
def test_diffusion_spec_refuses_inconsistent_settings(fields, message):
    with pytest.raises(ValueError, match=message):
        DiffusionSpec(**fields)


@pytest.mark.parametrize("module", ["triton_bundle.pipeline.diffusion_demo", "benchmarks.diffusion_rows"])
def test_the_diffusion_demo_and_benchmark_rows_import_against_the_current_library(module):
    """Neither runs in the fast suite (minutes of training): at least their imports must keep up with main."""
    import importlib

    names = {
        "triton_bundle.pipeline.diffusion_demo": "run_diffusion_demo",
        "benchmarks.diffusion_rows": "steps_rows",
    }
    assert callable(getattr(importlib.import_module(module), names[module]))
