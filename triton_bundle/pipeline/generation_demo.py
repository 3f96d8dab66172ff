"""`triton-bundle demo` for a text-generation spec (e.g. examples/support-gpt): every stage once, locally.

train the decoder -> KV-cache export + parity -> precision gates -> TensorRT-RTX ahead-of-time check
(when installed) -> model repository -> local Triton -> greedy continuations of held-out prompts
compared with PyTorch, and one prompt streamed over HTTP (SSE) and gRPC -> summary (table + JSON).
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel
from rich.table import Table

from triton_bundle.atomic import write_text_atomic
from triton_bundle.pipeline.demo import _step, console, demo_server_config
from triton_bundle.spec import ModelSpec

DEMO_PROMPTS = 8
DEMO_TOKENS = 32


class StreamCheck(BaseModel):
    protocol: str
    tokens: int
    ttft_ms: float | None
    tokens_per_s: float


class GenerationDemoSummary(BaseModel):
    model: str
    workdir: Path
    train_seconds: float
    heldout_perplexity: float | None
    onnx: Path
    parity_max_abs: float
    generation_match: float | None
    gates: dict[str, bool]
    tensorrt_aot: str | None
    repository: Path
    served_match_pytorch: float
    samples: list[tuple[str, str]]
    streams: list[StreamCheck]
    summary_json: Path
    seconds: float


def _precision_and_aot(spec: ModelSpec, workdir: Path) -> tuple[dict[str, bool], str | None]:
    from triton_bundle.precision.stage import make_variants

    result = make_variants(spec, workdir, force=True)
    for variant, report in result.reports.items():
        checks = ", ".join(c.describe() for c in report.gate.checks)
        console.print(f"{variant}: {'[green]passed' if report.passed else '[red]rejected'}[/] ({checks})")
    try:
        from triton_bundle.engine.stage import build_variant

        check = build_variant(spec, workdir, "fp32", aot=True)
        aot = check.aot.describe() if check.aot else None
    except Exception as exc:  # TensorRT-RTX is an optional extra: the demo reports, never stops on it
        aot = f"skipped: {exc}"
    console.print(f"TensorRT-RTX ahead-of-time: {aot}")
    return {v: r.passed for v, r in result.reports.items()}, aot


def _served(
    spec: ModelSpec, checkpoint: Path, server
) -> tuple[float, list[tuple[str, str]], list[StreamCheck]]:
    from triton_bundle.client.generation import Generation, TextGenerator
    from triton_bundle.export.decoder_parity import torch_greedy
    from triton_bundle.export.decoder_stage import load_decoder
    from triton_bundle.generation.prompts import heldout

    prompts = heldout(spec).prompts[:DEMO_PROMPTS]
    model, tokenizer = load_decoder(checkpoint)
    client = TextGenerator(f"grpc://{server.grpc_url}")
    samples, same = [], 0
    for prompt in prompts:
        served = client.generate(spec.name, prompt, DEMO_TOKENS).text
        ids = tokenizer(prompt)["input_ids"]
        tokens = torch_greedy(model, ids, DEMO_TOKENS, tokenizer.pad_token_id, tokenizer.eos_token_id)
        reference = tokenizer.backend_tokenizer.decode(tokens, skip_special_tokens=True)
        same += served == reference
        samples.append((prompt, served))
        console.print(f"[bold]{prompt}[/]{served}")
    streams = []
    for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
        result = Generation.collect(
            TextGenerator(f"{protocol}://{url}").stream(spec.name, prompts[0], DEMO_TOKENS)
        )
        ttft = result.ttft_s * 1000 if result.ttft_s is not None else None
        streams.append(
            StreamCheck(
                protocol=protocol, tokens=result.tokens, ttft_ms=ttft, tokens_per_s=result.tokens_per_s
            )
        )
    return same / len(prompts), samples, streams


def run_generation_demo(
    spec: ModelSpec, workdir: Path, repository_dir: Path | None = None
) -> GenerationDemoSummary:
    from triton_bundle.export.stage import export_model
    from triton_bundle.finetune import finetune
    from triton_bundle.repository.generate import generate_repository
    from triton_bundle.serving.local_triton import LocalTriton

    started = time.perf_counter()
    workdir = Path(workdir)
    _step(1, "train the decoder")
    tuned = finetune(spec, workdir, force=True)
    console.print(
        f"{tuned.train_examples} texts, {tuned.seconds:.0f}s, held-out perplexity {tuned.heldout_perplexity:.1f}"
    )
    _step(2, "export with a KV cache + parity with PyTorch")
    exported = export_model(spec, workdir, force=True)
    worst = max(o.max_abs for o in exported.report.outputs)
    console.print(
        f"{len(exported.report.cases)} shape cases, max |diff| {worst:.2e}; greedy equal to generate() on {exported.report.generation_match:.0%} of prompts"
    )
    _step(3, "precision variants behind next-token / perplexity gates")
    gates, aot = _precision_and_aot(spec, workdir)
    _step(4, "Triton model repository")
    repository = generate_repository(
        spec,
        workdir,
        out_dir=repository_dir or Path("model_repository") / spec.name,
        target="local",
        force=True,
    )
    console.print(str(repository))
    _step(5, "local Triton: greedy continuations of held-out prompts, streamed over HTTP and gRPC")
    with LocalTriton(demo_server_config(spec, repository, workdir / "triton.log")) as server:
        match, samples, streams = _served(spec, exported.checkpoint, server)
    summary = GenerationDemoSummary(
        model=spec.name, workdir=workdir.resolve(), train_seconds=tuned.seconds, heldout_perplexity=tuned.heldout_perplexity,
        onnx=exported.onnx, parity_max_abs=worst, generation_match=exported.report.generation_match, gates=gates,
        tensorrt_aot=aot, repository=repository, served_match_pytorch=match, samples=samples, streams=streams,
        summary_json=(workdir / "summary.json").resolve(), seconds=time.perf_counter() - started,
    )  # fmt: skip
    write_text_atomic(workdir / "summary.json", summary.model_dump_json(indent=2))
    _print(summary)
    return summary


def _print(summary: GenerationDemoSummary) -> None:
    table = Table(title=f"{summary.model}: text generation, end to end ({summary.seconds:.0f}s)")
    table.add_column("step")
    table.add_column("result")
    table.add_row(
        "export parity",
        f"max |diff| {summary.parity_max_abs:.2e}, greedy match {summary.generation_match:.0%}",
    )
    table.add_row(
        "precision gates",
        ", ".join(f"{v} {'passed' if ok else 'rejected'}" for v, ok in summary.gates.items()),
    )
    table.add_row("served greedy == PyTorch", f"{summary.served_match_pytorch:.0%} of held-out prompts")
    for s in summary.streams:
        ttft = f"{s.ttft_ms:.0f} ms" if s.ttft_ms is not None else "-"
        table.add_row(
            f"stream ({s.protocol})", f"{s.tokens} tokens, TTFT {ttft}, {s.tokens_per_s:.1f} tokens/s"
        )
    table.add_row("summary", str(summary.summary_json))
    console.print(table)
