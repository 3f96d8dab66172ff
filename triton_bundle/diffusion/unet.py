"""The diffusion model: a class-conditional `diffusers` UNet2DModel in pixel space (no VAE) + its schedulers.

The checkpoint follows the diffusers pipeline layout: `unet/` (save_pretrained: config.json +
diffusion_pytorch_model.safetensors), `scheduler/` (the DDIM scheduler config), `labels.json`.
`from_pretrained` loads each part; nothing is pickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from triton_bundle.diffusion.ddim import DDIMSchedule
from triton_bundle.diffusion.names import (
    CLASS_LABELS,
    LABELS_FILE,
    NOISE,
    SAMPLE,
    SCHEDULER_DIR,
    TIMESTEP,
    UNET_DIR,
)
from triton_bundle.errors import BundleError
from triton_bundle.spec import DiffusionSpec, ImageSpec


class DiffusionCheckpointError(BundleError):
    """A diffusion checkpoint directory without its UNet or scheduler."""


def build_unet(cfg: DiffusionSpec, image: ImageSpec, num_classes: int):
    from diffusers import UNet2DModel

    levels = len(cfg.block_out_channels)
    return UNet2DModel(
        sample_size=image.height,
        in_channels=image.channels,
        out_channels=image.channels,
        block_out_channels=tuple(cfg.block_out_channels),
        down_block_types=("DownBlock2D",) * levels,
        up_block_types=("UpBlock2D",) * levels,
        layers_per_block=cfg.layers_per_block,
        norm_num_groups=cfg.norm_num_groups,
        add_attention=False,  # 16x16 digits: convolutions suffice, and attention would triple CPU time
        num_class_embeds=num_classes,
    )


def build_schedulers(cfg: DiffusionSpec):
    """(DDPM for training, DDIM for sampling) over the same noise schedule."""
    from diffusers import DDIMScheduler, DDPMScheduler

    ddpm = DDPMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule)
    ddim = DDIMScheduler(
        num_train_timesteps=cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule, clip_sample=True
    )
    return ddpm, ddim


def load_unet(checkpoint: Path):
    from diffusers import UNet2DModel

    path = Path(checkpoint) / UNET_DIR
    if not (path / "config.json").is_file():
        raise DiffusionCheckpointError(
            f"{checkpoint} has no {UNET_DIR}/config.json: expected a diffusion checkpoint "
            "(run: triton-bundle finetune SPEC)"
        )
    return UNet2DModel.from_pretrained(path, use_safetensors=True, low_cpu_mem_usage=False).eval()


def load_scheduler(checkpoint: Path):
    from diffusers import DDIMScheduler

    path = Path(checkpoint) / SCHEDULER_DIR
    if not (path / "scheduler_config.json").is_file():
        raise DiffusionCheckpointError(f"{checkpoint} has no {SCHEDULER_DIR}/scheduler_config.json")
    return DDIMScheduler.from_pretrained(path)


def load_labels(checkpoint: Path) -> list[str]:
    return json.loads((Path(checkpoint) / LABELS_FILE).read_text(encoding="utf-8"))


def ddim_schedule(scheduler) -> DDIMSchedule:
    """The numpy schedule the server runs, taken from the diffusers scheduler (same constants)."""
    config = scheduler.config
    return DDIMSchedule(
        alphas_cumprod=scheduler.alphas_cumprod.numpy().astype(np.float32),
        final_alpha_cumprod=float(scheduler.final_alpha_cumprod),
        steps_offset=int(config.steps_offset),
        clip_sample=bool(config.clip_sample),
        clip_sample_range=float(config.clip_sample_range),
    )


class UNetForExport(nn.Module):
    """forward(sample [B,C,H,W], timestep int64 [B,1], class_labels int64 [B,1]) -> predicted noise."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet

    def forward(self, sample, timestep, class_labels):
        return self.unet(sample, timestep[:, 0], class_labels=class_labels[:, 0], return_dict=False)[0]


def diffusers_sample(unet, scheduler, noise: np.ndarray, labels: np.ndarray, steps: int) -> np.ndarray:
    """The PyTorch reference: diffusers' DDIMScheduler driving the UNet (DDIMPipeline's loop, with
    class labels), from the same seed-drawn noise the server uses."""
    scheduler.set_timesteps(steps)
    x = torch.from_numpy(noise.astype(np.float32))
    classes = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    with torch.no_grad():
        for t in scheduler.timesteps:
            eps = unet(x, t, class_labels=classes).sample
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
    return x.numpy()


def torch_unet_fn(unet):
    """The UNet as `ddim.sample` calls it (numpy in, numpy out)."""

    def run(x, t, labels):
        with torch.no_grad():
            out = unet(
                torch.from_numpy(x), torch.from_numpy(t[:, 0]), class_labels=torch.from_numpy(labels[:, 0])
            )
        return out.sample.numpy()

    return run


def ort_unet_fn(session):
    def run(x, t, labels):
        return session.run([NOISE], {SAMPLE: x.astype(np.float32), TIMESTEP: t, CLASS_LABELS: labels})[0]

    return run
