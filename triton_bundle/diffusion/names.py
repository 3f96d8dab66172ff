"""The UNet graph's tensor names (export, repository and the served sampler agree on them) and the
checkpoint's layout. Import-light on purpose: the repository plan reads them without loading torch."""

from __future__ import annotations

# Per-row timesteps and class ids are [B, 1], so Triton batches dim 0 of every input.
SAMPLE, TIMESTEP, CLASS_LABELS, NOISE = "sample", "timestep", "class_labels", "noise_pred"
UNET_DIR = "unet"
SCHEDULER_DIR = "scheduler"
LABELS_FILE = "labels.json"
