"""What one run measures: the full preset, the --quick preset, and command-line overrides."""

from __future__ import annotations

from dataclasses import dataclass, replace

from benchmarks.ort_inprocess import GROUPED, REAL_MIX, SequenceMode
from benchmarks.served import LoadPlan, ServedConfig
from triton_bundle.errors import BundleError
from triton_bundle.variants import ALL_VARIANTS

SECTIONS = ("limits", "ort", "baseline", "served", "gpu")
VARIANTS = ALL_VARIANTS


class BenchSettingsError(BundleError, ValueError):
    """A command-line value the benchmark cannot use."""


@dataclass(frozen=True)
class BenchSettings:
    mode: str
    sections: tuple[str, ...]
    variants: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    sequences: tuple[SequenceMode, ...]
    ort_seconds: float
    matmul_seconds: float
    load: LoadPlan
    served: tuple[ServedConfig, ...]
    baseline_workers: int


def _served_full() -> tuple[ServedConfig, ...]:
    return (
        ServedConfig("int8-dynamic", dynamic_batching=True, instances=1),
        # The demo spec's setting: batches still form under load (requests queue while the model runs).
        ServedConfig("int8-dynamic", dynamic_batching=True, instances=1, max_queue_delay_us=0),
        ServedConfig("int8-dynamic", dynamic_batching=False, instances=1),
        ServedConfig("int8-dynamic", dynamic_batching=True, instances=2),
        ServedConfig("int8-dynamic", dynamic_batching=False, instances=2),
        ServedConfig("fp32", dynamic_batching=True, instances=1),
    )


def preset(quick: bool, cores: int) -> BenchSettings:
    if quick:
        return BenchSettings(
            mode="quick",
            sections=SECTIONS,
            variants=VARIANTS,
            batch_sizes=(1, 8),
            sequences=(REAL_MIX, 128),
            ort_seconds=0.4,
            matmul_seconds=0.4,
            load=LoadPlan(concurrencies=(1, 8, 16), duration_s=3.0, warmup_s=1.0),
            served=(
                ServedConfig("int8-dynamic", dynamic_batching=True, instances=1),
                ServedConfig("int8-dynamic", dynamic_batching=False, instances=1),
            ),
            baseline_workers=cores,
        )
    return BenchSettings(
        mode="full",
        sections=SECTIONS,
        variants=VARIANTS,
        batch_sizes=(1, 8, 32),
        sequences=(REAL_MIX, GROUPED, 128),
        ort_seconds=2.0,
        matmul_seconds=1.5,
        load=LoadPlan(concurrencies=(1, 8, 16, 32), duration_s=8.0, warmup_s=2.0),
        served=_served_full(),
        baseline_workers=cores,
    )


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise BenchSettingsError(f"--{what} takes comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise BenchSettingsError(f"--{what} needs positive integers, got {text!r}")
    return values


def _names(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    values = tuple(v.strip() for v in text.split(",") if v.strip())
    unknown = [v for v in values if v not in allowed]
    if unknown or not values:
        raise BenchSettingsError(f"--{what}: unknown {unknown or text!r}; expected some of {list(allowed)}")
    return values


def parse_served(text: str) -> tuple[ServedConfig, ...]:
    """'int8-dynamic:dyn:1,int8-dynamic:off:2,fp32:dyn:1:500:1'
    (variant:batching[:instances[:delay_us[:intra_op_threads]]]; threads 0: the cores split among instances)."""
    configs = []
    for item in (v.strip() for v in text.split(",") if v.strip()):
        parts = item.split(":")
        if len(parts) < 2 or parts[0] not in VARIANTS or parts[1] not in ("dyn", "off"):
            raise BenchSettingsError(
                f"--served item {item!r}: expected VARIANT:dyn|off[:INSTANCES[:QUEUE_DELAY_US[:THREADS]]], "
                f"VARIANT one of {list(VARIANTS)}"
            )
        try:
            instances = int(parts[2]) if len(parts) > 2 else 1
            delay = int(parts[3]) if len(parts) > 3 else 2000
            threads = int(parts[4]) if len(parts) > 4 else 0
        except ValueError:
            raise BenchSettingsError(
                f"--served item {item!r}: INSTANCES, QUEUE_DELAY_US and THREADS are integers"
            ) from None
        configs.append(ServedConfig(parts[0], parts[1] == "dyn", instances, delay, intra_op_threads=threads))
    if not configs:
        raise BenchSettingsError("--served needs at least one VARIANT:dyn|off item")
    return tuple(configs)


def with_overrides(
    settings: BenchSettings,
    *,
    sections: str | None = None,
    variants: str | None = None,
    batch_sizes: str | None = None,
    concurrency: str | None = None,
    duration_s: float | None = None,
    served: str | None = None,
    baseline_workers: int | None = None,
) -> BenchSettings:
    changes: dict[str, object] = {}
    if sections:
        changes["sections"] = _names(sections, SECTIONS, "sections")
    if variants:
        chosen = _names(variants, VARIANTS, "variants")
        changes["variants"] = ("fp32", *[v for v in chosen if v != "fp32"])  # FP32 is the reference
    if batch_sizes:
        changes["batch_sizes"] = _ints(batch_sizes, "batch-sizes")
    load = settings.load
    if concurrency:
        load = replace(load, concurrencies=_ints(concurrency, "concurrency"))
    if duration_s is not None:
        if duration_s <= 0:
            raise BenchSettingsError(f"--duration must be positive, got {duration_s}")
        load = replace(load, duration_s=duration_s, warmup_s=min(load.warmup_s, duration_s))
    changes["load"] = load
    if served:
        changes["served"] = parse_served(served)
    if baseline_workers is not None:
        if baseline_workers < 1:
            raise BenchSettingsError(f"--baseline-workers must be >= 1, got {baseline_workers}")
        changes["baseline_workers"] = baseline_workers
    return replace(settings, **changes)
