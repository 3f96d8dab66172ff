"""Text generation side by side, one command on one machine with the same held-out prompts:

    python benchmarks/generation.py --spec examples/support-gpt/spec.yaml [--quick] [--out reports/generation]

- baseline: PyTorch eager generate() behind Flask / gunicorn (one sync worker per core), streaming SSE;
- served: the local Triton's decoder (the repository the spec generated), Triton's generate_stream;
  both at 1 / 4 / 16 concurrent streams: output tokens/s, time to first token, inter-token latency;
- ort: in-process onnxruntime greedy decoding with vs without the KV cache (the prefix recomputed).

Floors (issue 15): served tokens/s at 16 streams >= 3x the baseline's, served TTFT p95 no worse.
Writes generation.json and generation.md under --out and prints the table.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import typer
from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

from benchmarks.baseline_server import BaselineServer, BaselineSettings
from benchmarks.generation_baseline import ENV_CHECKPOINT, ENV_MAX_NEW_TOKENS, ENV_THREADS, GENERATION_APP
from benchmarks.generation_load import (
    StreamLoadResult,
    baseline_stream_endpoint,
    stream_closed_loop,
    triton_stream_endpoint,
)
from benchmarks.generation_ort import bench_ort
from benchmarks.machine_limits import cores
from benchmarks.results import Latency, TargetCheck
from triton_bundle.atomic import write_text_atomic
from triton_bundle.errors import BundleError
from triton_bundle.loadtest.workload import prompt_workload
from triton_bundle.manifest import Manifest
from triton_bundle.repository.sources import checkpoint_dir
from triton_bundle.spec import ModelSpec, load_spec

console = Console(width=None if sys.stdout.isatty() else 160)
app = typer.Typer(add_completion=False, help=__doc__)


class GenRow(BaseModel):
    section: str = Field(description="baseline, served or ort")
    name: str
    concurrency: int | None = None
    tokens_per_s: float
    ttft: Latency
    itl: Latency
    streams: int
    errors: int = 0
    notes: list[str] = Field(default_factory=list)


class GenerationBenchmark(BaseModel):
    model: str
    mode: str
    started_at: str
    wall_s: float = 0.0
    cores: int
    load_average_before: tuple[float, float, float]
    load_average_after: tuple[float, float, float] | None = None
    max_tokens: int
    rows: list[GenRow] = Field(default_factory=list)
    targets: list[TargetCheck] = Field(default_factory=list)
    skipped: dict[str, str] = Field(default_factory=dict)


class Inputs(BaseModel):
    checkpoint: Path | None
    repository: Path | None
    onnx: Path | None
    model: str


def resolve_inputs(spec: ModelSpec, workdir: Path, **given: Path | str | None) -> Inputs:
    """What each section runs on: the command line's paths, else what the stages recorded."""
    manifest = Manifest.load(workdir, spec.name)
    recorded = lambda stage, key: (  # noqa: E731
        manifest.stages[stage].artifact(key)
        if stage in manifest.stages and key in manifest.stages[stage].artifacts
        else None
    )
    return Inputs(
        checkpoint=given.get("checkpoint") or checkpoint_dir(spec, manifest),
        repository=given.get("repository") or recorded("repository", "repository"),
        onnx=given.get("onnx") or recorded("export", "onnx"),
        model=str(given.get("model") or spec.name),
    )


def _row(section: str, name: str, result: StreamLoadResult) -> GenRow:
    notes = [f"first error: {result.first_error}"] if result.first_error else []
    return GenRow(
        section=section,
        name=name,
        concurrency=result.concurrency,
        tokens_per_s=result.tokens_per_s,
        ttft=result.ttft,
        itl=result.itl,
        streams=result.streams,
        errors=result.errors,
        notes=notes,
    )


def _sweep(section: str, endpoint, prompts, levels, max_tokens, duration_s, warmup_s) -> list[GenRow]:
    rows = []
    for level in levels:
        console.print(f"  {section}: {level} concurrent streams ...")
        result = stream_closed_loop(endpoint, prompts, max_tokens, level, duration_s, warmup_s)
        rows.append(_row(section, f"{section} x{level}", result))
    return rows


def run_baseline(
    inputs: Inputs, prompts, levels, max_tokens, duration_s, warmup_s, out: Path
) -> list[GenRow]:
    if inputs.checkpoint is None:
        raise BundleError("no checkpoint for the baseline: run the finetune stage or pass --checkpoint")
    settings = BaselineSettings(
        checkpoint=inputs.checkpoint,
        log_file=out / "baseline.log",
        workers=cores(),
        app=GENERATION_APP,
        extra_env={
            ENV_CHECKPOINT: str(inputs.checkpoint),
            ENV_THREADS: "1",
            ENV_MAX_NEW_TOKENS: str(max_tokens),
        },
    )
    with BaselineServer(settings) as server:
        endpoint = baseline_stream_endpoint("127.0.0.1", server.port)
        return _sweep("baseline", endpoint, prompts, levels, max_tokens, duration_s, warmup_s)


def run_served(inputs: Inputs, prompts, levels, max_tokens, duration_s, warmup_s, out: Path) -> list[GenRow]:
    from triton_bundle.serving.local_triton import LocalTriton, ServerConfig

    if inputs.repository is None:
        raise BundleError("no model repository: run `triton-bundle repo generate SPEC` or pass --repository")
    with LocalTriton(ServerConfig(repository=inputs.repository, log_file=out / "triton.log")) as server:
        host, port = server.http_url.rsplit(":", 1)
        endpoint = triton_stream_endpoint(host, int(port), inputs.model)
        return _sweep("served", endpoint, prompts, levels, max_tokens, duration_s, warmup_s)


def run_ort(inputs: Inputs, prompts: list[str], max_tokens: int, count: int) -> list[GenRow]:
    from tokenizers import Tokenizer

    if inputs.onnx is None or inputs.checkpoint is None:
        raise BundleError(
            "no exported decoder: run `triton-bundle export SPEC` or pass --onnx and --checkpoint"
        )
    tokenizer = Tokenizer.from_file(str(inputs.checkpoint / "tokenizer.json"))
    ids = [tokenizer.encode(p).ids for p in prompts[:count]]
    rows = []
    for result in bench_ort(inputs.onnx, ids, max_tokens, threads=cores()):
        mode = "with KV cache" if result.kv_cache else "no cache (prefix recomputed)"
        notes = []
        if result.same_tokens_as_cache is False:
            notes.append("greedy tokens differ from the cached run: the cache changes the result")
        rows.append(
            GenRow(
                section="ort",
                name=f"onnxruntime {mode}",
                tokens_per_s=result.tokens_per_s,
                ttft=result.ttft,
                itl=result.itl,
                streams=result.prompts,
                notes=notes,
            )
        )
    return rows


def targets(rows: list[GenRow], level: int) -> list[TargetCheck]:
    """The issue's floors at `level` streams, and the KV cache's measured gain."""
    pick = lambda section, name=None: next(  # noqa: E731
        (
            r
            for r in rows
            if r.section == section and (r.concurrency == level if name is None else name in r.name)
        ),
        None,
    )
    base, served = pick("baseline"), pick("served")
    checks = []
    if base and served:
        ratio = served.tokens_per_s / base.tokens_per_s if base.tokens_per_s else float("inf")
        checks.append(
            TargetCheck(
                name=f"served tokens/s at {level} streams vs baseline",
                passed=ratio >= 3.0,
                measured=f"{served.tokens_per_s:.1f} vs {base.tokens_per_s:.1f} tokens/s ({ratio:.1f}x)",
                required=">= 3x",
            )
        )
        checks.append(
            TargetCheck(
                name=f"served TTFT p95 at {level} streams vs baseline",
                passed=served.ttft.p95_ms <= base.ttft.p95_ms,
                measured=f"{served.ttft.p95_ms:.0f} vs {base.ttft.p95_ms:.0f} ms",
                required="no worse than the baseline",
            )
        )
    cached, plain = pick("ort", "with KV cache"), pick("ort", "no cache")
    if cached and plain:
        gain = cached.tokens_per_s / plain.tokens_per_s if plain.tokens_per_s else float("inf")
        checks.append(
            TargetCheck(
                name="KV cache gain, onnxruntime in-process",
                passed=gain > 1.0 and not plain.notes,
                measured=f"{cached.tokens_per_s:.1f} vs {plain.tokens_per_s:.1f} tokens/s ({gain:.1f}x)",
                required="faster with the cache, same greedy tokens",
            )
        )
    return checks


def markdown(result: GenerationBenchmark) -> str:
    lines = [
        f"# Generation benchmark: {result.model} ({result.mode})",
        "",
        f"{result.started_at}, {result.cores} cores, load average before {result.load_average_before}, "
        f"{result.max_tokens} new tokens per stream, {result.wall_s:.0f} s.",
        "",
        "| path | streams | output tokens/s | TTFT p50 | TTFT p95 | ITL p50 | ITL p95 | completed | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result.rows:
        lines.append(
            f"| {r.name} | {r.concurrency or 1} | {r.tokens_per_s:.1f} | {r.ttft.p50_ms:.1f} ms | "
            f"{r.ttft.p95_ms:.1f} ms | {r.itl.p50_ms:.1f} ms | {r.itl.p95_ms:.1f} ms | {r.streams} | {r.errors} |"
        )
    if result.targets:
        lines += ["", "| target | measured | required | result |", "|---|---|---|---|"]
        for t in result.targets:
            verdict = "n/a" if t.passed is None else ("pass" if t.passed else "**FAIL**")
            lines.append(f"| {t.name} | {t.measured} | {t.required} | {verdict} |")
    for section, reason in result.skipped.items():
        lines.append(f"\n- {section} skipped: {reason}")
    return "\n".join(lines) + "\n"


def print_table(result: GenerationBenchmark) -> None:
    table = Table(title=f"generation: {result.model}")
    for column in ("path", "streams", "tokens/s", "TTFT p50", "TTFT p95", "ITL p50", "ITL p95", "errors"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for r in result.rows:
        table.add_row(
            r.name,
            str(r.concurrency or 1),
            f"{r.tokens_per_s:.1f}",
            f"{r.ttft.p50_ms:.0f} ms",
            f"{r.ttft.p95_ms:.0f} ms",
            f"{r.itl.p50_ms:.1f} ms",
            f"{r.itl.p95_ms:.1f} ms",
            str(r.errors),
        )
    console.print(table)
    for t in result.targets:
        colour = "green" if t.passed else "red"
        console.print(f"[{colour}]{t.name}: {t.measured} (required {t.required})[/]")
    for section, reason in result.skipped.items():
        console.print(f"[yellow]{section} skipped: {reason}[/]")


def _section(result: GenerationBenchmark, name: str, body) -> None:
    """A failing section is reported as skipped with its error; the others still run."""
    try:
        result.rows += body()
    except (BundleError, OSError, ValueError, RuntimeError) as exc:
        result.skipped[name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


@app.command()
def main(
    spec_path: Path = typer.Option(..., "--spec", help="a text-generation spec"),
    workdir: Path | None = typer.Option(None, help="stage outputs (default: artifacts/<name>)"),
    out: Path = typer.Option(Path("reports/generation"), help="where generation.json / .md go"),
    quick: bool = typer.Option(False, help="short windows, fewer prompts (a smoke run)"),
    concurrency: str = typer.Option("1,4,16", help="concurrent streams, comma-separated"),
    max_tokens: int = typer.Option(32, min=1, help="new tokens per stream"),
    sections: str = typer.Option("baseline,served,ort", help="which sections to run"),
    checkpoint: Path | None = typer.Option(None, help="override: the PyTorch checkpoint"),
    repository: Path | None = typer.Option(None, help="override: the model repository to serve"),
    onnx: Path | None = typer.Option(None, help="override: the exported decoder graph"),
    model: str | None = typer.Option(None, help="override: the served model's name"),
    duration: float | None = typer.Option(None, min=0.5, help="override: seconds measured per level"),
) -> None:
    """Run the generation benchmark and write generation.json + generation.md."""
    spec = load_spec(spec_path)
    workdir = workdir or spec.default_workdir()
    out.mkdir(parents=True, exist_ok=True)
    inputs = resolve_inputs(
        spec, workdir, checkpoint=checkpoint, repository=repository, onnx=onnx, model=model
    )
    prompts = prompt_workload(spec).texts
    levels = [int(c) for c in concurrency.split(",") if c.strip()]
    duration_s, warmup_s = (4.0, 1.0) if quick else (20.0, 3.0)
    if duration is not None:
        duration_s, warmup_s = duration, min(warmup_s, duration / 2)
    result = GenerationBenchmark(
        model=spec.name,
        mode="quick" if quick else "full",
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        cores=cores(),
        load_average_before=os.getloadavg(),
        max_tokens=max_tokens,
    )
    started = time.perf_counter()
    chosen = set(sections.split(","))
    runs = {
        "baseline": lambda: run_baseline(inputs, prompts, levels, max_tokens, duration_s, warmup_s, out),
        "served": lambda: run_served(inputs, prompts, levels, max_tokens, duration_s, warmup_s, out),
        "ort": lambda: run_ort(inputs, prompts, max_tokens, 4 if quick else 16),
    }
    for name, body in runs.items():
        if name in chosen:
            console.print(f"[bold]{name}[/]")
            _section(result, name, body)
    result.wall_s = time.perf_counter() - started
    result.load_average_after = os.getloadavg()
    result.targets = targets(result.rows, max(levels))
    write_text_atomic(out / "generation.json", result.model_dump_json(indent=2))
    write_text_atomic(out / "generation.md", markdown(result))
    print_table(result)
    console.print(f"wrote {out / 'generation.json'} and {out / 'generation.md'} ({result.wall_s:.0f} s)")


if __name__ == "__main__":
    app()
