"""DDIM sampling (eta 0) in numpy: the loop the served orchestration model runs, one schedule per request.

Self-contained on purpose (numpy only): the repository copies this file beside the orchestration
model's model.py, which cannot import triton_bundle inside a Triton container. It mirrors diffusers'
`DDIMScheduler` ("leading" timestep spacing, epsilon prediction, clip_sample); tests pin the two equal.
The schedule's constants (alphas_cumprod and friends) come from the trained scheduler's config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SCHEDULE_FILE = "ddim_schedule.json"


@dataclass(frozen=True)
class DDIMSchedule:
    alphas_cumprod: np.ndarray  # float32 [num_train_timesteps]
    final_alpha_cumprod: float  # alpha of the step after the last (1.0 when set_alpha_to_one)
    steps_offset: int = 0
    clip_sample: bool = True
    clip_sample_range: float = 1.0

    @property
    def num_train_timesteps(self) -> int:
        return len(self.alphas_cumprod)

    def timesteps(self, steps: int) -> np.ndarray:
        """The `steps` training timesteps visited, high to low ("leading" spacing)."""
        if not 1 <= steps <= self.num_train_timesteps:
            raise ValueError(f"steps must be in [1, {self.num_train_timesteps}], got {steps}")
        ratio = self.num_train_timesteps // steps
        return (np.arange(steps) * ratio).round()[::-1].astype(np.int64) + self.steps_offset

    def step(self, eps: np.ndarray, t: np.ndarray, x: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """One DDIM update for rows at timesteps `t` (int64 [B]) sampled with `steps` (int [B]) steps."""
        prev = t - self.num_train_timesteps // steps
        alpha = self.alphas_cumprod[t].astype(np.float32)
        alpha_prev = np.where(prev >= 0, self.alphas_cumprod[np.maximum(prev, 0)], self.final_alpha_cumprod)
        shape = (-1,) + (1,) * (x.ndim - 1)
        alpha, alpha_prev = alpha.reshape(shape), alpha_prev.astype(np.float32).reshape(shape)
        x0 = (x - np.sqrt(1 - alpha) * eps) / np.sqrt(alpha)
        if self.clip_sample:
            x0 = np.clip(x0, -self.clip_sample_range, self.clip_sample_range)
        return (np.sqrt(alpha_prev) * x0 + np.sqrt(1 - alpha_prev) * eps).astype(np.float32)

    def to_json(self) -> str:
        return json.dumps(
            {
                "alphas_cumprod": [float(a) for a in self.alphas_cumprod],
                "final_alpha_cumprod": self.final_alpha_cumprod,
                "steps_offset": self.steps_offset,
                "clip_sample": self.clip_sample,
                "clip_sample_range": self.clip_sample_range,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> DDIMSchedule:
        data = json.loads(text)
        return cls(
            alphas_cumprod=np.asarray(data["alphas_cumprod"], dtype=np.float32),
            final_alpha_cumprod=float(data["final_alpha_cumprod"]),
            steps_offset=int(data["steps_offset"]),
            clip_sample=bool(data["clip_sample"]),
            clip_sample_range=float(data["clip_sample_range"]),
        )

    @classmethod
    def read(cls, path: Path) -> DDIMSchedule:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


def sample(
    unet, schedule: DDIMSchedule, noise: np.ndarray, labels: np.ndarray, steps: np.ndarray
) -> np.ndarray:
    """Denoise `noise` [B, C, H, W]; row i takes steps[i] steps. `unet(x, t [B, 1], labels [B, 1]) -> eps`.

    Rows with fewer steps finish early and drop out of later UNet calls, so one loop serves requests
    that asked for different step counts (each UNet call takes per-row timesteps)."""
    x = noise.astype(np.float32).copy()
    steps = np.asarray(steps, dtype=np.int64)
    plans = {int(s): schedule.timesteps(int(s)) for s in np.unique(steps)}
    for i in range(int(steps.max())):
        rows = np.flatnonzero(steps > i)
        t = np.array([plans[int(steps[r])][i] for r in rows], dtype=np.int64)
        eps = unet(x[rows], t[:, None], labels[rows].reshape(-1, 1).astype(np.int64))
        x[rows] = schedule.step(eps, t, x[rows], steps[rows])
    return x
