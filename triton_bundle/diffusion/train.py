"""The finetune stage for diffusion: a class-conditional UNet2DModel trained with DDPM noise on the digits.

Writes `<workdir>/checkpoint/` in the diffusers layout (unet/, scheduler/, labels.json) and a "finetune"
manifest record whose metrics include how often the digit classifier reads each sampled digit as the
class it was asked for (20 DDIM steps, the spec's gate seeds).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from triton_bundle.atomic import atomic_path, check_overwrite
from triton_bundle.diffusion.unet import LABELS_FILE, SCHEDULER_DIR, UNET_DIR, build_schedulers, build_unet
from triton_bundle.errors import BundleError
from triton_bundle.finetune_record import FinetuneDetails, FinetuneRecord
from triton_bundle.manifest import Manifest
from triton_bundle.progress import progress_bar
from triton_bundle.spec import DiffusionSpec, ModelSpec


class DiffusionTrainingError(BundleError):
    pass


@dataclass(frozen=True)
class DiffusionTrainResult:
    checkpoint: Path
    labels: list[str]
    train_examples: int
    final_loss: float
    class_agreement: float  # share of sampled gate-seed digits the classifier reads as the asked class
    seconds: float

    @property
    def eval_accuracy(self) -> float:
        """What `triton-bundle finetune` reports for every task: here, the classifier's agreement."""
        return self.class_agreement


def _train_loop(unet, ddpm, images, labels, cfg: DiffusionSpec) -> float:
    """Epsilon-prediction MSE at uniform random timesteps; one-cycle learning rate. Returns the last
    smoothed loss."""
    import torch

    optimizer = torch.optim.AdamW(unet.parameters(), lr=cfg.learning_rate)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=cfg.learning_rate, total_steps=cfg.train_steps, pct_start=0.1
    )
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    smoothed = None
    unet.train()
    with progress_bar("training the diffusion UNet", cfg.train_steps) as advance:
        for _ in range(cfg.train_steps):
            idx = torch.randint(0, len(x), (cfg.batch_size,))
            clean, classes = x[idx], y[idx]
            noise = torch.randn_like(clean)
            t = torch.randint(0, cfg.num_train_timesteps, (cfg.batch_size,))
            pred = unet(ddpm.add_noise(clean, noise, t), t, class_labels=classes).sample
            loss = torch.nn.functional.mse_loss(pred, noise)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            smoothed = loss.item() if smoothed is None else 0.95 * smoothed + 0.05 * loss.item()
            advance(1, f"loss {smoothed:.4f}")
    unet.eval()
    return float(smoothed)


def gate_inputs(spec: ModelSpec, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(seeds, class ids) every check samples: the spec's gate seeds, class = seed % classes."""
    seeds = np.asarray(spec.image.gate_seeds, dtype=np.int64)
    return seeds, seeds % num_classes


def class_agreement(spec: ModelSpec, unet, scheduler, labels: list[str], steps: int) -> float:
    from triton_bundle.diffusion.unet import diffusers_sample
    from triton_bundle.imagegen.classifier import digit_classifier
    from triton_bundle.imagegen.png import to_uint8
    from triton_bundle.imagegen.seeds import latents_for_seeds

    seeds, classes = gate_inputs(spec, len(labels))
    noise = latents_for_seeds(seeds.tolist(), spec.image.latent_shape)
    images = to_uint8(diffusers_sample(unet, scheduler, noise, classes, steps), spec.image.value_range)
    predicted = digit_classifier(spec.image.height).predict(images)
    return float((predicted == classes).mean())


def finetune_diffusion(spec: ModelSpec, workdir: Path, force: bool = False) -> DiffusionTrainResult:
    """Train the spec's UNet on the digits at image.height; save it with save_pretrained (safetensors)."""
    import torch

    from triton_bundle.imagegen.digits import DIGIT_LABELS, load_digit_images

    if spec.image is None or spec.image.dataset != "digits":
        raise DiffusionTrainingError("diffusion training needs `image.dataset: digits`")
    cfg, target = spec.diffusion, Path(workdir) / "checkpoint"
    check_overwrite(target, force)
    labels = list(spec.labels or DIGIT_LABELS)
    if len(labels) != len(DIGIT_LABELS):
        raise DiffusionTrainingError(f"the digits have 10 classes; spec.labels lists {len(labels)}")
    data = load_digit_images(spec.image.height, "train")
    if spec.image.channels != 1 or spec.image.height != spec.image.width:
        raise DiffusionTrainingError(
            "the digits are square single-channel images: set channels 1, height = width"
        )
    torch.manual_seed(cfg.seed)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        unet = build_unet(cfg, spec.image, len(labels))
        ddpm, ddim = build_schedulers(cfg)
        started = time.perf_counter()
        loss = _train_loop(unet, ddpm, data.images, data.labels, cfg)
        seconds = time.perf_counter() - started
        agreement = class_agreement(spec, unet, ddim, labels, cfg.steps)
    finally:
        torch.set_num_threads(previous_threads)
    with atomic_path(target, force=True) as tmp:
        unet.save_pretrained(tmp / UNET_DIR, safe_serialization=True)
        ddim.save_pretrained(tmp / SCHEDULER_DIR)
        (tmp / LABELS_FILE).write_text(json.dumps(labels, indent=2), encoding="utf-8")
    _record(spec, workdir, target, loss, agreement, seconds, len(data))
    return DiffusionTrainResult(target.resolve(), labels, len(data), loss, agreement, seconds)


def _record(spec, workdir, target, loss, agreement, seconds, examples) -> None:
    manifest = Manifest.load(workdir, spec.name)
    manifest.record(
        FinetuneRecord(
            artifacts={"checkpoint": target.resolve()},
            metrics={
                "train_loss": loss,
                "class_agreement": agreement,
                "train_seconds": seconds,
                "train_examples": float(examples),
            },
            details=FinetuneDetails(task=spec.task, model="diffusers UNet2DModel (pixel space, no VAE)"),
        )
    )
    manifest.save(workdir)
