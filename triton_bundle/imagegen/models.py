"""Two generator families: forward(latent [B, Z], class_label int64 [B]) -> [B, C, H, W].

Both end in tanh (value range [-1, 1], layout NCHW). With num_classes=0 a generator is unconditional:
forward(latent) alone. `ConvGenerator` is DCGAN-shaped (a linear map to a
4x4 feature map, then stride-2 transposed convolutions); `MLPGenerator` is fully connected.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _check_size(size: int) -> int:
    ups = math.log2(size / 4)
    if size < 8 or ups != int(ups):
        raise ValueError(f"size must be 4 * 2**k (8, 16, 32, ...), got {size}")
    return int(ups)


class _Conditioning(nn.Module):
    """The class embedding concatenated to the latent (nothing for an unconditional generator)."""

    def __init__(self, num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_classes, width) if num_classes else None
        self.width = width if num_classes else 0

    def forward(self, latent: torch.Tensor, class_label: torch.Tensor | None) -> torch.Tensor:
        if self.embed is None:
            return latent
        if class_label is None:
            raise ValueError("this generator is class-conditional: pass class_label")
        return torch.cat([latent, self.embed(class_label)], dim=1)


class ConvGenerator(nn.Module):
    def __init__(
        self, latent_dim: int = 32, num_classes: int = 10, width: int = 32, size: int = 16, channels: int = 1
    ) -> None:
        super().__init__()
        ups = _check_size(size)
        self.latent_dim, self.channels, self.size = latent_dim, channels, size
        self.condition = _Conditioning(num_classes)
        top = width * 2 ** (ups - 1)
        self.project = nn.Sequential(nn.Linear(latent_dim + self.condition.width, top * 16), nn.ReLU())
        self.top = top
        layers: list[nn.Module] = []
        for _ in range(ups - 1):
            layers += [nn.ConvTranspose2d(top, top // 2, 4, 2, 1), nn.BatchNorm2d(top // 2), nn.ReLU()]
            top //= 2
        layers += [nn.ConvTranspose2d(top, channels, 4, 2, 1), nn.Tanh()]
        self.body = nn.Sequential(*layers)

    def forward(self, latent: torch.Tensor, class_label: torch.Tensor | None = None) -> torch.Tensor:
        hidden = self.project(self.condition(latent, class_label))
        return self.body(hidden.view(-1, self.top, 4, 4))


class MLPGenerator(nn.Module):
    def __init__(
        self,
        latent_dim: int = 32,
        num_classes: int = 10,
        hidden: int = 256,
        size: int = 16,
        channels: int = 1,
    ) -> None:
        super().__init__()
        self.latent_dim, self.channels, self.size = latent_dim, channels, size
        self.condition = _Conditioning(num_classes)
        self.body = nn.Sequential(
            nn.Linear(latent_dim + self.condition.width, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, channels * size * size),
            nn.Tanh(),
        )

    def forward(self, latent: torch.Tensor, class_label: torch.Tensor | None = None) -> torch.Tensor:
        out = self.body(self.condition(latent, class_label))
        return out.view(-1, self.channels, self.size, self.size)
