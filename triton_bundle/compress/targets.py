"""compress.target -> the student sizes to try, checked before any work starts."""

from __future__ import annotations

from triton_bundle.compress.errors import PruneTargetError
from triton_bundle.compress.measure import flops_per_sequence
from triton_bundle.compress.prune import check_heads, check_layers, ffn_width
from triton_bundle.compress.structure import Located
from triton_bundle.spec import CompressSpec

TYPICAL_TOKENS = 32.0  # for a speed-up target: FLOPs at a typical short-text length


def _layers_for_speedup(cfg: CompressSpec, located: Located, ffn: int) -> int:
    hidden = located.heads * located.head_size
    full = flops_per_sequence(located.layers, hidden, located.ffn, TYPICAL_TOKENS)
    wanted = cfg.target.speedup or 1.0
    fits = [
        n
        for n in range(1, located.layers + 1)
        if full / flops_per_sequence(n, hidden, ffn, TYPICAL_TOKENS) >= wanted
    ]
    if not fits:
        best = full / flops_per_sequence(1, hidden, ffn, TYPICAL_TOKENS)
        raise PruneTargetError(
            f"compress.target.speedup {wanted:g} needs fewer than 1 of {located.layers} layers (1 layer gives "
            f"{best:.1f}x by FLOPs): it would remove everything; expected a speed-up of at most {best:.1f}"
        )
    return max(fits)


def candidate_counts(cfg: CompressSpec, located: Located, search: bool) -> tuple[list[int], int]:
    """(layer counts to try, smallest first; FFN width per layer)."""
    target = cfg.target
    check_heads(target, located)
    ffn = ffn_width(target, located)
    if search:
        counts = sorted(set(cfg.search_layers))
        for count in counts:
            check_layers(count, located, ffn, "compress.search_layers entry")
        return counts, ffn
    if target.layers is not None:
        check_layers(target.layers, located, ffn, "compress.target.layers")
        return [target.layers], ffn
    if target.speedup is not None:
        return [_layers_for_speedup(cfg, located, ffn)], ffn
    raise PruneTargetError(
        "compress.target names no size: set compress.target.layers (layers to keep) or "
        "compress.target.speedup, or run with --search"
    )
