"""`triton-bundle demo`: the whole pipeline on the local target, with a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from triton_bundle.cli_common import SpecArg, WorkdirOpt, console, open_spec

MIN_AGREEMENT = 0.99


def demo_command(
    spec_path: SpecArg = Path("examples/minilm-intent/spec.yaml"),
    workdir: WorkdirOpt = None,
    repository: Annotated[
        Path | None,
        typer.Option(help="where to write the model repository [default: model_repository/<name>]"),
    ] = None,
) -> None:
    """Fine-tune, export, build the repository, serve it locally, classify and load-test: one command."""
    from triton_bundle.pipeline.demo import run_demo

    spec, workdir = open_spec(spec_path, workdir)
    if spec.task == "text-generation":  # train, export, gate, serve and stream a decoder
        from triton_bundle.pipeline.generation_demo import run_generation_demo

        generated = run_generation_demo(spec, workdir, repository)
        if generated.served_match_pytorch < MIN_AGREEMENT:
            console.print(
                f"[red]served greedy text equals PyTorch's on only {generated.served_match_pytorch:.0%} of prompts"
            )
            raise typer.Exit(1)
        return
    if spec.task == "diffusion":  # train, export, gate, serve the DDIM loop and compare with diffusers
        from triton_bundle.pipeline.diffusion_demo import run_diffusion_demo

        sampled = run_diffusion_demo(spec, workdir, repository)
        worst = min(s.min_psnr_db for s in sampled.served)
        if worst < spec.image.min_parity_psnr_db or not all(s.ready_after for s in sampled.served):
            console.print(f"[red]served images differ from diffusers': worst PSNR {worst:.1f} dB")
            raise typer.Exit(1)
        return
    if spec.task == "image-generation":  # train, export, gate, serve and compare a digit generator
        from triton_bundle.pipeline.image_demo import run_image_demo

        images = run_image_demo(spec, workdir, repository)
        worst = min(s.equal_to_pytorch for s in images.served)
        if worst < MIN_AGREEMENT or not all(s.ready_after for s in images.served):
            console.print(f"[red]served images equal PyTorch's on only {worst:.0%} of the gate seeds")
            raise typer.Exit(1)
        return
    summary = run_demo(spec, workdir, repository)
    low = [c for c in summary.served if c.agreement_with_pytorch < MIN_AGREEMENT]
    if low:
        console.print(
            f"[red]served labels agree with PyTorch on less than {MIN_AGREEMENT:.0%} of held-out sentences: "
            + ", ".join(f"{c.protocol} {c.agreement_with_pytorch:.2%}" for c in low)
        )
        raise typer.Exit(1)
    if not summary.loadtest_passed:
        console.print("[red]the load test missed its SLOs (see the report above)")
        raise typer.Exit(1)
