"""Seed -> latent: the one documented generator every stage and the server use.

`numpy.random.Generator(numpy.random.PCG64(seed)).standard_normal(shape, dtype=float32)`: PCG64 streams
are stable across numpy versions and platforms (numpy's policy for bit generators), unlike torch's CPU
generator, whose normal sampling changed between releases. A batch of seeds draws each latent from its
own seed, so an image never depends on which other requests it was batched with.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from triton_bundle.errors import BundleError

MAX_SEED = 2**63 - 1  # INT64 on the wire; PCG64 accepts any non-negative integer


class SeedError(BundleError, ValueError):
    """A seed that is not a non-negative 64-bit integer."""


def check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise SeedError(f"a seed must be an integer, got {seed!r} ({type(seed).__name__})")
    if not 0 <= int(seed) <= MAX_SEED:
        raise SeedError(f"a seed must be between 0 and {MAX_SEED}, got {seed}")
    return int(seed)


def rng_for_seed(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(check_seed(seed)))


def latent_from_seed(seed: int, shape: Sequence[int]) -> np.ndarray:
    """float32 standard-normal noise of `shape` (one image's latent), the same for the same seed."""
    return rng_for_seed(seed).standard_normal(tuple(shape), dtype=np.float32)


def latents_for_seeds(seeds: Sequence[int], shape: Sequence[int]) -> np.ndarray:
    """[len(seeds), *shape]: each row drawn from its own seed."""
    return np.stack([latent_from_seed(s, shape) for s in seeds]).astype(np.float32)
