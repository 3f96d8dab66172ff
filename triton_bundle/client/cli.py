"""`triton-bundle infer` (texts in, JSON lines out) and `triton-bundle stats` (per-model statistics).

stdout carries only results (one JSON object per input, in input order), so it can be piped;
errors and the progress bar go to stderr.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from enum import StrEnum
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from triton_bundle.client.connection import DEFAULT_PORTS, parse_endpoint
from triton_bundle.client.errors import ClientError
from triton_bundle.client.readers import InputFormat, count_records, format_for_path, read_texts
from triton_bundle.repository.contract import EMBEDDING_OUTPUT, ENTITIES_OUTPUT, LABELS_OUTPUT

if TYPE_CHECKING:
    from triton_bundle.client.client import TritonClient
    from triton_bundle.client.retry import RetryEvent

_err = Console(stderr=True)


class ProtocolChoice(StrEnum):
    http = "http"
    grpc = "grpc"


class FormatChoice(StrEnum):
    auto = "auto"
    jsonl = "jsonl"
    csv = "csv"
    lines = "lines"


class AggregationChoice(StrEnum):
    none = "none"
    simple = "simple"
    first = "first"
    average = "average"
    max = "max"


class TaskChoice(StrEnum):
    auto = "auto"
    classify = "classify"
    embed = "embed"
    tag = "tag"


UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        "-u",
        help="server: http://host:8000, grpc://host:8001 or host:port "
        "(default: the spec's serving address, else 127.0.0.1)",
        show_default=False,
    ),
]
ProtocolOpt = Annotated[
    ProtocolChoice | None,
    typer.Option("--protocol", "-p", help="http or grpc, for URLs without a scheme (default: http)"),
]
SpecOpt = Annotated[
    Path | None, typer.Option("--spec", "-s", help="take the model name and server address from this spec")
]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="seconds per request", min=0.001)]
RetriesOpt = Annotated[
    int, typer.Option("--retries", help="attempts per request on UNAVAILABLE / connection errors", min=1)
]


class CliError(ClientError, ValueError):
    """Command-line arguments that do not fit together."""


def _server(
    url: str | None, protocol: ProtocolChoice | None, spec_path: Path | None
) -> tuple[str, str | None]:
    """The URL and protocol to use: explicit flags first, then the spec's serving section."""
    chosen = protocol.value if protocol else None
    if url:
        return url, chosen
    if spec_path is not None:
        from triton_bundle.spec import load_spec

        spec = load_spec(spec_path)
        chosen = chosen or "http"
        port = spec.serving.grpc_port if chosen == "grpc" else spec.serving.http_port
        return f"{spec.serving.host}:{port}", chosen
    chosen = chosen or "http"
    return f"127.0.0.1:{DEFAULT_PORTS[chosen]}", chosen  # type: ignore[index]


def _model_name(model: str | None, spec_path: Path | None) -> str:
    if model:
        return model
    if spec_path is not None:
        from triton_bundle.repository.contract import entry_model
        from triton_bundle.spec import load_spec

        spec = load_spec(spec_path)
        return entry_model(spec.name, spec.task)
    raise CliError("no model given: pass --model NAME or --spec SPEC.yaml")


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _warn_retry(event: RetryEvent) -> None:
    _err.print(
        f"[yellow]retrying[/] {event.what} in {event.delay_s:.2f} s (attempt {event.attempt} failed: "
        f"{str(event.error)[:160]})"
    )


def _records(
    texts: list[str] | None, file: Path | None, fmt: FormatChoice, field: str
) -> tuple[Iterator[str], int | None, Any]:
    """The texts, their count when cheaply known (for the progress bar), and a file to close."""
    if texts and file is not None:
        raise CliError("give texts as arguments or --file, not both")
    if texts:
        return iter(texts), len(texts), None
    if file is None or str(file) == "-":
        if file is None and sys.stdin.isatty():
            raise CliError("no input: pass texts as arguments, --file PATH, or pipe text into stdin")
        return read_texts(sys.stdin, fmt.value, field), None, None  # type: ignore[arg-type]
    if not file.is_file():
        raise CliError(f"input file not found: {file}")
    chosen: InputFormat = format_for_path(file) if fmt is FormatChoice.auto else fmt.value  # type: ignore[assignment]
    handle = open(file, encoding="utf-8", newline="" if chosen == "csv" else None)  # noqa: SIM115 - closed by caller
    return read_texts(handle, chosen, field, str(file)), count_records(file, chosen, field), handle


def _choose_task(task: TaskChoice, outputs: list[str], model: str) -> str:
    if task is not TaskChoice.auto:
        return task.value
    if LABELS_OUTPUT in outputs:
        return "classify"
    if EMBEDDING_OUTPUT in outputs:
        return "embed"
    if ENTITIES_OUTPUT in outputs:
        return "tag"
    raise CliError(
        f"model '{model}' has none of {LABELS_OUTPUT}, {EMBEDDING_OUTPUT}, {ENTITIES_OUTPUT} outputs (it has: "
        f"{', '.join(outputs)}); `infer` handles text-classification, feature-extraction and "
        "token-classification models"
    )


def infer_command(
    texts: Annotated[
        list[str] | None,
        typer.Argument(help="texts to send; without them, read --file or stdin", show_default=False),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="model name (default: the spec's name)")
    ] = None,
    spec_path: SpecOpt = None,
    url: UrlOpt = None,
    protocol: ProtocolOpt = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="read inputs from this file ('-': stdin)")
    ] = None,
    input_format: Annotated[
        FormatChoice, typer.Option("--format", help="input format (auto: by file suffix; stdin: sniffed)")
    ] = FormatChoice.auto,
    field: Annotated[str, typer.Option("--field", help="JSON / CSV field that holds the text")] = "text",
    task: Annotated[
        TaskChoice, typer.Option("--task", help="auto: from the model's outputs")
    ] = TaskChoice.auto,
    probabilities: Annotated[
        bool, typer.Option("--probabilities", help="add every label's probability (classification)")
    ] = False,
    aggregation: Annotated[
        AggregationChoice | None,
        typer.Option("--aggregation", help="token classification: group tokens this way (default: served)"),
    ] = None,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size", help="texts per client call (split further to the server's max batch)", min=1
        ),
    ] = 256,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="requests in flight", min=1)] = 4,
    timeout: TimeoutOpt = 60.0,
    retries: RetriesOpt = 6,
    shm_threshold: Annotated[
        int | None,
        typer.Option(
            "--shm-threshold", help="send inputs of at least this many bytes via system shared memory"
        ),
    ] = None,
) -> None:
    """Send texts to a served model; print one JSON line per input (text, labels, scores / embedding / entities)."""
    # Imported here so `triton-bundle --help` does not pay for numpy / pydantic models.
    from triton_bundle.client.client import ClientOptions, TritonClient
    from triton_bundle.client.retry import RetryPolicy

    name = _model_name(model, spec_path)
    server_url, server_protocol = _server(url, protocol, spec_path)
    records, total, handle = _records(texts, file, input_format, field)
    options = ClientOptions(
        timeout_s=timeout,
        retry=RetryPolicy(max_attempts=retries),
        concurrency=concurrency,
        shm_threshold_bytes=shm_threshold,
    )
    try:
        with TritonClient(server_url, server_protocol, options=options, on_retry=_warn_retry) as client:
            metadata = client.model_metadata(name)
            chosen = _choose_task(task, metadata.output_names, name)
            # A bar only for files (arguments are few, stdin has no known total) and only while stdout
            # goes to a file or pipe: on a terminal the printed lines already show progress.
            show_bar = bool(total) and file is not None and str(file) != "-" and not sys.stdout.isatty()
            with _maybe_progress(f"{chosen} {name}", total or 0, show_bar) as advance:
                for chunk in _chunks(records, batch_size):
                    if chosen == "tag":
                        lines = _tag_lines(client, name, chunk, aggregation.value if aggregation else None)
                    else:
                        lines = _infer_lines(client, chosen, name, chunk, probabilities)
                    sys.stdout.write("".join(lines))
                    sys.stdout.flush()
                    advance(len(chunk))
    finally:
        if handle is not None:
            handle.close()


@contextlib.contextmanager
def _maybe_progress(description: str, total: int, show: bool) -> Iterator[Callable[[int], None]]:
    """A bar on stderr. Rich's default would capture sys.stdout and reprint it on the bar's console
    (stderr): the JSON lines must stay on stdout, so stdout is left alone."""
    if not show:
        yield lambda n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(
        *columns, console=_err, disable=not _err.is_terminal, redirect_stdout=False, redirect_stderr=False
    ) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.update(task, advance=n)


def _infer_lines(
    client: TritonClient, task: str, model: str, texts: list[str], probabilities: bool
) -> list[str]:
    if task == "embed":
        result = client.embed(model, texts)
        return [
            json.dumps(
                {"text": text, "embedding": vector.tolist(), "model_version": version}, ensure_ascii=False
            )
            + "\n"
            for text, vector, version in zip(result.texts, result.vectors, result.model_versions, strict=True)
        ]
    results = client.classify(model, texts, probabilities=probabilities)
    return [json.dumps(item.model_dump(exclude_none=True), ensure_ascii=False) + "\n" for item in results]


def _tag_lines(client: TritonClient, model: str, texts: list[str], aggregation: str | None) -> list[str]:
    """Token classification: one line per text with its entities (label, score, word, start, end)."""
    results = client.tag(model, texts, aggregation=aggregation)
    return [json.dumps(item.model_dump(exclude_none=True), ensure_ascii=False) + "\n" for item in results]


def stats_command(
    model: Annotated[
        str | None, typer.Argument(help="one model (default: every model)", show_default=False)
    ] = None,
    spec_path: SpecOpt = None,
    url: UrlOpt = None,
    protocol: ProtocolOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the statistics as JSON instead")] = False,
    timeout: TimeoutOpt = 10.0,
    retries: RetriesOpt = 3,
) -> None:
    """Triton's per-model statistics: requests, batches formed, queue vs compute time."""
    from triton_bundle.client.client import ClientOptions, TritonClient
    from triton_bundle.client.retry import RetryPolicy
    from triton_bundle.client.stats import stats_table

    server_url, server_protocol = _server(url, protocol, spec_path)
    options = ClientOptions(timeout_s=timeout, retry=RetryPolicy(max_attempts=retries), concurrency=1)
    with TritonClient(server_url, server_protocol, options=options) as client:
        stats = client.statistics(model or "")
        if as_json:
            sys.stdout.write(json.dumps([s.model_dump() for s in stats], indent=2) + "\n")
            return
        endpoint = parse_endpoint(server_url, server_protocol)
        out = Console()
        if not out.is_terminal:
            out = Console(width=200)  # piped output: no terminal width to fit, keep rows unwrapped
        out.print(stats_table(stats, title=f"Triton model statistics at {endpoint.url}"))
