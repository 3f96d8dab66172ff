"""The finetune stage for `task: image-generation`: a class-conditional generator trained on the digits.

The generator (source.module with source.kwargs) is trained as the decoder of a conditional VAE: a small
encoder maps (image, class) to a latent distribution, the KL term pulls it towards N(0, 1), so that at
serving time a latent drawn from the seed's N(0, 1) noise decodes to a digit of the asked class. A small
conditional discriminator adds a non-saturating GAN loss on prior samples (finetune.image.adversarial_weight)
for sharper strokes. Writes `<workdir>/checkpoint/generator.safetensors` + `generator.json` and a
"finetune" manifest record whose eval metric is the digit classifier's agreement with the asked class.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from triton_bundle.atomic import atomic_path, check_overwrite
from triton_bundle.errors import BundleError
from triton_bundle.finetune_record import FinetuneDetails, FinetuneRecord
from triton_bundle.manifest import Manifest
from triton_bundle.progress import progress_bar
from triton_bundle.spec import ImageTrainSpec, ModelSpec

CHECKPOINT_DIR = "checkpoint"
WEIGHTS_FILE = "generator.safetensors"
MODULE_FILE = "generator.json"


class ImageTrainError(BundleError):
    pass


class _Encoder(nn.Module):
    def __init__(self, pixels: int, latent_dim: int, classes: int, hidden: int = 256) -> None:
        super().__init__()
        self.embed = nn.Embedding(classes, 16)
        self.body = nn.Sequential(
            nn.Linear(pixels + 16, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent_dim)
        )

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.body(torch.cat([images.flatten(1), self.embed(labels)], 1)).chunk(2, dim=1)
        return mu, logvar.clamp(-8, 8)


class _Critic(nn.Module):
    def __init__(self, pixels: int, classes: int, hidden: int = 128) -> None:
        super().__init__()
        self.embed = nn.Embedding(classes, 16)
        self.body = nn.Sequential(
            nn.Linear(pixels + 16, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 1),
        )

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([images.flatten(1), self.embed(labels)], 1))


def build_generator(spec: ModelSpec) -> nn.Module:
    """source.module(**source.kwargs), checked against the spec's image section."""
    from triton_bundle.export.torch_module import import_class

    assert spec.image is not None
    module = import_class(str(spec.source.module), spec.base_dir)(**spec.source.kwargs)
    latent = getattr(module, "latent_dim", None)
    if latent is not None and [latent] != list(spec.image.latent_shape):
        raise ImageTrainError(
            f"{type(module).__name__} takes a latent of {latent}, but image.latent_shape is {spec.image.latent_shape}"
        )
    return module


def _step(gen, enc, critic, opts, images, labels, cfg: ImageTrainSpec) -> float:
    gen_opt, critic_opt = opts
    mu, logvar = enc(images, labels)
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
    recon = ((gen(z, labels) - images) ** 2).flatten(1).sum(1).mean()
    kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp())).sum(1).mean()
    loss = recon + cfg.kl_weight * kl
    if cfg.adversarial_weight > 0:
        fake = gen(torch.randn_like(mu), labels)
        loss = (
            loss
            + cfg.adversarial_weight
            * images[0].numel()
            * nn.functional.softplus(-critic(fake, labels)).mean()
        )
    gen_opt.zero_grad()
    loss.backward()
    gen_opt.step()
    if cfg.adversarial_weight > 0:
        real, fake = critic(images, labels), critic(fake.detach(), labels)
        critic_loss = nn.functional.softplus(-real).mean() + nn.functional.softplus(fake).mean()
        critic_opt.zero_grad()
        critic_loss.backward()
        critic_opt.step()
    return float(recon.detach())


def _train(spec: ModelSpec, gen: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    cfg, image_cfg = spec.finetune, spec.finetune.image
    classes, pixels = len(spec.labels), images[0].numel()
    enc, critic = _Encoder(pixels, spec.image.latent_shape[0], classes), _Critic(pixels, classes)
    gen_opt = torch.optim.Adam([*gen.parameters(), *enc.parameters()], lr=cfg.learning_rate)
    critic_opt = torch.optim.Adam(critic.parameters(), lr=cfg.learning_rate, betas=(0.5, 0.999))
    steps = (len(images) + cfg.batch_size - 1) // cfg.batch_size
    started = time.perf_counter()
    gen.train()
    with progress_bar("training the generator", total=cfg.epochs * steps) as advance:
        for _ in range(cfg.epochs):
            order = torch.randperm(len(images))
            for start in range(0, len(order), cfg.batch_size):
                batch = order[start : start + cfg.batch_size]
                recon = _step(
                    gen, enc, critic, (gen_opt, critic_opt), images[batch], labels[batch], image_cfg
                )
                advance(1, f"reconstruction {recon:.1f}")
    gen.eval()
    return time.perf_counter() - started


def generate(
    gen: nn.Module, seeds: list[int], labels: list[int] | None, latent_shape: list[int]
) -> np.ndarray:
    """PyTorch eager images for these seeds (latents from imagegen.seeds), float [B, C, H, W]; labels None:
    an unconditional generator."""
    from triton_bundle.imagegen.seeds import latents_for_seeds

    with torch.no_grad():
        latent = torch.from_numpy(latents_for_seeds(seeds, latent_shape))
        if labels is None:
            return gen(latent).numpy()
        return gen(latent, torch.tensor(labels, dtype=torch.int64)).numpy()


def finetune_image_generator(spec: ModelSpec, workdir: Path, force: bool = False):
    """Train source.module on image.dataset; save safetensors; record the class agreement of its samples."""
    from safetensors.torch import save_file

    from triton_bundle.finetune import FinetuneResult
    from triton_bundle.imagegen.classifier import digit_classifier
    from triton_bundle.imagegen.digits import load_digit_images
    from triton_bundle.imagegen.png import to_uint8

    if spec.finetune is None or spec.finetune.image is None or spec.image is None or not spec.labels:
        raise ImageTrainError(
            "image-generation fine-tuning needs finetune.image, an image section and labels"
        )
    if spec.image.height != spec.image.width or spec.image.channels != 1:
        raise ImageTrainError("the digits data set is square and grey: image.height == width, channels 1")
    target = Path(workdir) / CHECKPOINT_DIR
    check_overwrite(target, force)
    torch.manual_seed(spec.finetune.seed)
    torch.set_num_threads(spec.finetune.image.threads)
    gen = build_generator(spec)
    train = load_digit_images(spec.image.height, "train")
    seconds = _train(spec, gen, torch.from_numpy(train.images), torch.from_numpy(train.labels))
    seeds = list(spec.image.gate_seeds)
    asked = [s % len(spec.labels) for s in seeds]
    pixels = to_uint8(generate(gen, seeds, asked, spec.image.latent_shape), spec.image.value_range)
    agreement = float(
        np.mean(digit_classifier(spec.image.height, workdir).predict(pixels) == np.array(asked))
    )
    with atomic_path(target, force=True) as tmp:
        tmp.mkdir()
        save_file({k: v.contiguous() for k, v in gen.state_dict().items()}, str(tmp / WEIGHTS_FILE))
        module = {"module": spec.source.module, "kwargs": spec.source.kwargs}
        (tmp / MODULE_FILE).write_text(json.dumps(module, indent=2), encoding="utf-8")
        (tmp / "labels.json").write_text(json.dumps(spec.labels), encoding="utf-8")
    manifest = Manifest.load(workdir, spec.name)
    manifest.record(
        FinetuneRecord(
            artifacts={"checkpoint": target.resolve(), "weights": (target / WEIGHTS_FILE).resolve()},
            metrics={"eval_accuracy": agreement, "train_seconds": seconds, "train_examples": len(train)},
            details=FinetuneDetails(labels=spec.labels or [], module=spec.source.module, kwargs=spec.source.kwargs,
                                    eval="digit classifier agrees with the asked class at image.gate_seeds"),
        )
    )  # fmt: skip
    manifest.save(workdir)
    return FinetuneResult(target.resolve(), list(spec.labels), len(train), agreement, seconds)
