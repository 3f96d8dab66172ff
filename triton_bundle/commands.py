"""Mounts each stage's commands on the top-level app. A stage adds itself here with one line."""

from __future__ import annotations

import typer


def register_all(app: typer.Typer) -> None:
    # Stage CLI modules import their heavy dependencies (torch, onnx, tritonclient) lazily, inside the
    # commands, so `triton-bundle --help` stays fast.
    from triton_bundle.client import cli as client_cli
    from triton_bundle.client import generate_cli, image_cli
    from triton_bundle.compress import cli as compress_cli
    from triton_bundle.doctor import cli as doctor_cli
    from triton_bundle.engine import cli as engine_cli
    from triton_bundle.export import cli as export_cli
    from triton_bundle.init import cli as init_cli
    from triton_bundle.loadtest import cli as loadtest_cli
    from triton_bundle.loadtest import tune_cli
    from triton_bundle.operate import cli as operate_cli
    from triton_bundle.pipeline import cli as pipeline_cli
    from triton_bundle.precision import cli as precision_cli
    from triton_bundle.repository import cli as repository_cli
    from triton_bundle.serving import cli as serving_cli
    from triton_bundle.serving import preflight_cli

    app.command("doctor")(doctor_cli.doctor_command)
    app.command("init")(init_cli.init_command)
    app.command("demo")(pipeline_cli.demo_command)
    app.command("finetune")(export_cli.finetune_command)
    app.command("compress")(compress_cli.compress_command)
    app.command("export")(export_cli.export_command)
    app.command("precision")(precision_cli.precision_command)
    app.command("build")(engine_cli.build_command)
    app.add_typer(repository_cli.app, name="repo")
    app.command("serve")(serving_cli.serve)
    app.command("preflight")(preflight_cli.preflight_command)
    app.command("infer")(client_cli.infer_command)
    app.command("stats")(client_cli.stats_command)
    app.command("generate")(generate_cli.generate_command)
    app.command("generate-image")(image_cli.generate_image_command)
    loadtest_cli.register(app)
    app.command("tune")(tune_cli.tune_command)
    app.add_typer(operate_cli.app, name="ops")
