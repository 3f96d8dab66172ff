"""Mounts each stage's commands on the top-level app. A stage adds itself here with one line."""

from __future__ import annotations

import typer


def register_all(app: typer.Typer) -> None:
    # Imports stay inside so `triton-bundle --help` does not import torch.
    # --- stage registrations (one line each) ---
    from triton_bundle.export import cli as export_cli

    app.command("finetune")(export_cli.finetune_command)
    app.command("export")(export_cli.export_command)
