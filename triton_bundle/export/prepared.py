"""What every modality hands the export stage: a wrapped module, its I/O contract, real parity inputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn


@dataclass
class ParityCase:
    """One set of real inputs at a named shape (e.g. 'max: batch 32 x sequence 128')."""

    name: str
    feeds: dict[str, np.ndarray]

    @property
    def batch(self) -> int:
        return int(next(iter(self.feeds.values())).shape[0])


@dataclass
class PreparedExport:
    """A model ready to export, with the inputs that prove it.

    `cases` starts with the min, opt and max shape cases (the export traces the opt one; the frozen-dim
    check runs min and max), followed by the whole evaluation set at its natural shapes.
    """

    module: nn.Module
    input_axes: dict[str, dict[int, str]]  # every input, in forward-argument order ({} when all fixed)
    output_axes: dict[str, dict[int, str]]  # every output, in the module's return order
    cases: list[ParityCase]
    source: Path  # the checkpoint directory, or the torch-module weights file
    labels: list[str] | None = None
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # per case: real-token masks
    details: dict[str, Any] = field(default_factory=dict)  # modality extras for the manifest

    @property
    def input_names(self) -> list[str]:
        return list(self.input_axes)

    @property
    def output_names(self) -> list[str]:
        return list(self.output_axes)

    @property
    def min_case(self) -> ParityCase:
        return self.cases[0]

    @property
    def opt_case(self) -> ParityCase:
        return self.cases[1]

    @property
    def max_case(self) -> ParityCase:
        return self.cases[2]


def cycle(items: list, n: int) -> list:
    """`n` items taken round-robin from real examples (the eval set may be smaller than a max batch)."""
    return [items[i % len(items)] for i in range(n)]


def chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, n)) for start in range(0, n, size)]
