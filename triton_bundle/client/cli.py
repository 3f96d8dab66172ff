"""`triton-bundle infer` (texts, images or .npz tensors in; JSON lines or .npz out) and
`triton-bundle stats` (per-model statistics).

stdout carries only results (one JSON object per input, in input order), so it can be piped;
errors and the progress bar go to stderr.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from triton_bundle.client.connection import DEFAULT_PORTS, parse_endpoint
from triton_bundle.client.errors import ClientError
from triton_bundle.client.readers import InputFormat, count_records, format_for_path, read_texts
from triton_bundle.export.image_data import IMAGE_SUFFIXES
from triton_bundle.net import client_host
from triton_bundle.repository.contract import (
    EMBEDDING_OUTPUT,
    ENTITIES_OUTPUT,
    IMAGE_INPUT,
    LABELS_OUTPUT,
    TEXT_INPUT,
)

if TYPE_CHECKING:
    from triton_bundle.client.client import TritonClient
    from triton_bundle.client.metadata import ModelMetadata
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
    image = "image"
    tensor = "tensor"


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
FileOpt = Annotated[
    Path | None,
    typer.Option("--file", "-f", help="read inputs from this file ('-': stdin), image directory or .npz"),
]
OutOpt = Annotated[
    Path | None,
    typer.Option(
        "--out", "-o", help="write results here instead of stdout (.npz for tensor models; JSON lines else)"
    ),
]
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
        return f"{client_host(spec.serving.host)}:{port}", chosen  # a wildcard bind: dial loopback
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
    if file.suffix.lower() in IMAGE_SUFFIXES | {".npz"}:
        raise CliError(
            f"{file} looks like {'an image' if file.suffix.lower() in IMAGE_SUFFIXES else 'a .npz tensor archive'}, "
            "but this model takes text; send images to an image model and .npz files to a tensor model "
            "(or pick --task)"
        )
    chosen: InputFormat = format_for_path(file) if fmt is FormatChoice.auto else fmt.value  # type: ignore[assignment]
    handle = open(file, encoding="utf-8", newline="" if chosen == "csv" else None)  # noqa: SIM115 - closed by caller
    return read_texts(handle, chosen, field, str(file)), count_records(file, chosen, field), handle


def _input_task(task: TaskChoice, metadata: ModelMetadata) -> str | None:
    """image / tensor when the model's inputs (or --task) say so; None for text models."""
    if task in (TaskChoice.image, TaskChoice.tensor):
        return task.value
    if task is not TaskChoice.auto:
        return None
    names = metadata.input_names
    if IMAGE_INPUT in names:
        return "image"
    text_like = TEXT_INPUT in names or (len(metadata.inputs) == 1 and metadata.inputs[0].datatype == "BYTES")
    return None if text_like else "tensor"


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
        typer.Argument(
            help="texts to send (image models: image files or directories; tensor models: one .npz); "
            "without them, read --file or stdin",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="model name (default: the spec's name)")
    ] = None,
    spec_path: SpecOpt = None,
    url: UrlOpt = None,
    protocol: ProtocolOpt = None,
    file: FileOpt = None,
    out: OutOpt = None,
    input_format: Annotated[
        FormatChoice, typer.Option("--format", help="input format (auto: by file suffix; stdin: sniffed)")
    ] = FormatChoice.auto,
    field: Annotated[
        str, typer.Option("--field", help="JSON / CSV field that holds the text (image lists: 'image')")
    ] = "text",
    task: Annotated[
        TaskChoice, typer.Option("--task", help="auto: from the model's inputs and outputs")
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
            "--batch-size", help="inputs per client call (split further to the server's max batch)", min=1
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
    """Send texts, images or tensors to a served model; print one JSON line per input (labels, scores,
    embedding, entities or output tensors), or write them to --out."""
    # Imported here so `triton-bundle --help` does not pay for numpy / pydantic models.
    from triton_bundle.client.client import ClientOptions, TritonClient
    from triton_bundle.client.retry import RetryPolicy

    name = _model_name(model, spec_path)
    server_url, server_protocol = _server(url, protocol, spec_path)
    if file is not None and str(file) != "-" and not file.exists():
        raise CliError(f"input file not found: {file}")
    options = ClientOptions(
        timeout_s=timeout,
        retry=RetryPolicy(max_attempts=retries),
        concurrency=concurrency,
        shm_threshold_bytes=shm_threshold,
    )
    with TritonClient(server_url, server_protocol, options=options, on_retry=_warn_retry) as client:
        metadata = client.model_metadata(name)
        chosen = _input_task(task, metadata) or _choose_task(task, metadata.output_names, name)
        request = _Request(client, name, chosen, texts or [], file, out, batch_size)
        if chosen == "tensor":
            _infer_tensor_file(request, metadata.batched)
        elif chosen == "image":
            _infer_images(request, "image" if field == "text" else field)
        else:
            _infer_texts(request, input_format, field, probabilities, aggregation and aggregation.value)


@dataclass(frozen=True)
class _Request:
    """What one `infer` run sends, and where the answers go."""

    client: TritonClient
    model: str
    task: str
    args: list[str]
    file: Path | None
    out: Path | None
    batch_size: int

    def show_bar(self, total: int | None) -> bool:
        # A bar only for files (arguments are few, stdin has no known total) and only while results go
        # to a file or pipe: on a terminal the printed lines already show progress.
        from_file = self.file is not None and str(self.file) != "-"
        return bool(total) and from_file and (self.out is not None or not sys.stdout.isatty())


@contextlib.contextmanager
def _sink(out: Path | None) -> Iterator[Callable[[str], None]]:
    """Where JSON lines go: stdout (flushed per chunk), or --out written atomically at the end."""
    if out is None:

        def write(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        yield write
        return
    from triton_bundle.atomic import atomic_path

    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        yield handle.write


def _infer_texts(
    request: _Request, fmt: FormatChoice, field: str, probabilities: bool, aggregation: str | None = None
) -> None:
    records, total, handle = _records(request.args, request.file, fmt, field)
    try:
        with (
            _sink(request.out) as write,
            _maybe_progress(
                f"{request.task} {request.model}", total or 0, request.show_bar(total)
            ) as advance,
        ):
            for chunk in _chunks(records, request.batch_size):
                if request.task == "tag":
                    lines = _tag_lines(request.client, request.model, chunk, aggregation)
                else:
                    lines = _infer_lines(request.client, request.task, request.model, chunk, probabilities)
                write("".join(lines))
                advance(len(chunk))
    finally:
        if handle is not None:
            handle.close()


def _infer_images(request: _Request, field: str) -> None:
    from triton_bundle.client.cli_inputs import check_images, image_batches, image_paths

    items: list[str | Path] = [*request.args, *([request.file] if request.file is not None else [])]
    if not items or str(request.file) == "-":
        raise CliError(
            f"model '{request.model}' takes images: pass image files or a directory as arguments or --file"
        )
    paths = check_images(image_paths(items, field))
    show = request.show_bar(len(paths))
    with (
        _sink(request.out) as write,
        _maybe_progress(f"image {request.model}", len(paths), show) as advance,
    ):
        for sources, blobs in image_batches(paths, request.batch_size):
            results = request.client.classify_images(request.model, blobs)
            lines = []
            for source, result in zip(sources, results, strict=True):
                row = result.model_dump(exclude_none=True) | {"source": source}
                lines.append(json.dumps(row, ensure_ascii=False) + "\n")
            write("".join(lines))
            advance(len(sources))


def _infer_tensor_file(request: _Request, batched: bool) -> None:
    from triton_bundle.client.cli_inputs import TENSOR_SUFFIX, read_npz, tensor_rows, write_npz
    from triton_bundle.client.errors import InvalidInputError

    given = [*request.args, *([str(request.file)] if request.file is not None else [])]
    if len(given) != 1 or given[0] == "-":
        raise CliError(
            f"model '{request.model}' takes tensors: pass one .npz file (one array per input name) "
            f"as the argument or --file (got {len(given)} input(s))"
        )
    source = Path(given[0])
    if request.out is not None and request.out.suffix.lower() != TENSOR_SUFFIX:
        raise CliError(f"--out {request.out}: tensor outputs are written as a .npz archive; name it *.npz")
    arrays = read_npz(source)
    try:
        result = request.client.infer_tensors(request.model, arrays)
    except InvalidInputError as exc:
        raise InvalidInputError(f"{source}: {exc}") from None
    if request.out is not None:
        write_npz(request.out, result.outputs)
        shapes = ", ".join(f"{n} {list(a.shape)} {a.dtype}" for n, a in result.outputs.items())
        _err.print(f"wrote {request.out}: {shapes}", markup=False, highlight=False)
        return
    for row in tensor_rows(result.outputs, result.model_versions, batched):
        sys.stdout.write(json.dumps(row) + "\n")
    sys.stdout.flush()


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
