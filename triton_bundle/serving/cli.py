"""`triton-bundle serve SPEC`: a local Triton in the foreground until Ctrl-C / SIGTERM."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from triton_bundle.cli_common import SpecArg, WorkdirOpt, open_spec, print_path
from triton_bundle.errors import BundleError
from triton_bundle.overrides import with_overrides
from triton_bundle.serving.local_triton import LocalTriton, ServerConfig
from triton_bundle.serving.paths import default_repository

_console = Console()


class ServerDiedError(BundleError, RuntimeError):
    """The server stopped on its own while serving."""


def serve(
    spec_path: SpecArg,
    repository: Annotated[
        Path | None, typer.Option(help="model repository (default: the one `repo generate` recorded)")
    ] = None,
    workdir: WorkdirOpt = None,
    host: Annotated[str | None, typer.Option(help="bind address (default: spec serving.host)")] = None,
    http_port: Annotated[int | None, typer.Option(help="0 picks a free port (default: spec)")] = None,
    grpc_port: Annotated[int | None, typer.Option(help="0 picks a free port (default: spec)")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="0 picks a free port (default: spec)")] = None,
    log_file: Annotated[Path | None, typer.Option(help="default <workdir>/serving/tritonserver.log")] = None,
) -> None:
    """Serve a generated model repository with the local Triton until Ctrl-C or SIGTERM."""
    spec, workdir = open_spec(spec_path, workdir)
    serving = with_overrides(
        spec.serving, host=host, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port
    )
    config = ServerConfig(
        repository=repository or default_repository(spec.name, workdir),
        log_file=log_file or workdir / "serving" / "tritonserver.log",
        host=serving.host,
        http_port=serving.http_port,
        grpc_port=serving.grpc_port,
        metrics_port=serving.metrics_port,
        ready_timeout_s=serving.ready_timeout_s,
    )

    # SIGTERM (docker stop, systemd, kill) ends the loop like Ctrl-C so the server is stopped cleanly.
    def _on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    server = LocalTriton(config)
    try:
        with _console.status(f"starting Triton with {config.repository} ..."):
            server.start()
        print_ready(server, config, _console)
        _console.print("[dim]Ctrl-C or SIGTERM stops the server.[/]")
        while server.is_running():
            time.sleep(0.5)
        raise ServerDiedError(f"tritonserver (pid {server.pid}) exited on its own; see {config.log_file}")
    except KeyboardInterrupt:
        _console.print("stopping Triton ...")
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
    _console.print("[green]stopped[/]")


def print_ready(server: LocalTriton, config: ServerConfig, out: Console) -> None:
    out.print(_endpoints_table(server, config))
    print_path("repository:", Path(config.repository).resolve(), out)
    print_path("log:", Path(config.log_file).resolve(), out)


def _endpoints_table(server: LocalTriton, config: ServerConfig) -> Table:
    table = Table(title=f"Triton is ready (pid {server.pid})", show_header=False)
    table.add_row("HTTP", f"http://{server.http_url}")
    table.add_row("gRPC", server.grpc_url)
    table.add_row("metrics", f"http://{server.metrics_url}/metrics")
    return table  # repository and log paths go on lines of their own: whole, ready to copy
