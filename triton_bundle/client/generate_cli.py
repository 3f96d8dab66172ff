"""`triton-bundle generate "prompt"`: text from a served decoder, streamed token by token with --stream.

stdout carries the generated text (as it arrives when streaming) and then one line of timings:
time to first token, output tokens per second and the token count.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from triton_bundle.client.cli import ProtocolOpt, SpecOpt, UrlOpt, _model_name, _server

ModelOpt = Annotated[
    str | None, typer.Option("--model", "-m", help="served model name (default: the spec's)")
]


def generate_command(
    prompt: Annotated[str, typer.Argument(help="the text to continue")],
    max_tokens: Annotated[int, typer.Option("--max-tokens", "-n", min=1, help="tokens to generate")] = 64,
    stream: Annotated[bool, typer.Option("--stream", help="print tokens as they arrive")] = False,
    temperature: Annotated[float | None, typer.Option(help="0 = greedy (the server's default)")] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", help="sample among the k likeliest tokens")] = None,
    top_p: Annotated[float | None, typer.Option("--top-p", help="nucleus sampling mass, (0, 1]")] = None,
    seed: Annotated[int | None, typer.Option(help="sampling seed (repeatable output)")] = None,
    stop: Annotated[
        list[str] | None, typer.Option("--stop", help="stop before this text (repeatable)")
    ] = None,
    model: ModelOpt = None,
    spec: SpecOpt = None,
    url: UrlOpt = None,
    protocol: ProtocolOpt = None,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.001, help="seconds for the whole generation")
    ] = 300.0,
) -> None:
    """Generate text with a served text-generation model (HTTP generate / SSE, or gRPC streaming)."""
    from triton_bundle.client.generation import Generation, TextGenerator

    address, chosen = _server(url, protocol, Path(spec) if spec else None)
    name = _model_name(model, Path(spec) if spec else None)
    client = TextGenerator(address, chosen, timeout_s=timeout)
    sampling = {
        "temperature": temperature,
        "top_k": top_k,
        "top_p": top_p,
        "seed": seed,
        "stop": tuple(stop or ()),
    }
    if not stream:
        result = client.generate(name, prompt, max_tokens, **sampling)
        sys.stdout.write(result.text + "\n")
        sys.stdout.write(f"[{result.total_s * 1000:.0f} ms]\n")
        return
    result = Generation.collect(_echo(client.stream(name, prompt, max_tokens, **sampling)))
    ttft = f"{result.ttft_s * 1000:.0f} ms" if result.ttft_s is not None else "-"
    sys.stdout.write(f"\n[TTFT {ttft} | {result.tokens_per_s:.1f} tokens/s | {result.tokens} tokens]\n")


def _echo(chunks):
    for chunk in chunks:
        sys.stdout.write(chunk.text)
        sys.stdout.flush()
        yield chunk
