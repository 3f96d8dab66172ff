"""`triton-bundle demo`: every stage once, on the embedded default target (local Triton, CPU).

fine-tune -> export + parity -> model repository -> local Triton -> classify held-out text over HTTP
and gRPC (agreement with PyTorch) -> Locust load test -> summary (table + JSON).
"""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from triton_bundle.atomic import write_text_atomic
from triton_bundle.data import load_texts
from triton_bundle.formatting import ms as _ms
from triton_bundle.labels import accuracy as gold_accuracy
from triton_bundle.labels import map_gold
from triton_bundle.net import port_or_free
from triton_bundle.repository.sources import labels_for
from triton_bundle.spec import ModelSpec

console = Console()


def demo_server_config(spec: ModelSpec, repository: Path, log_file: Path):
    """Every demo's local Triton: the spec's serving ports where they are free, else free ones."""
    from triton_bundle.serving.local_triton import ServerConfig

    host = spec.serving.host
    return ServerConfig(
        repository=repository,
        log_file=log_file,
        host=host,
        http_port=port_or_free(host, spec.serving.http_port),
        grpc_port=port_or_free(host, spec.serving.grpc_port),
        metrics_port=port_or_free(host, spec.serving.metrics_port),
        ready_timeout_s=spec.serving.ready_timeout_s,
    )


class ProtocolCheck(BaseModel):
    protocol: str
    sentences: int
    agreement_with_pytorch: float
    accuracy: float | None  # None: the held-out data has no gold labels
    seconds: float


class DemoSummary(BaseModel):
    model: str
    workdir: Path
    checkpoint: Path
    onnx: Path
    parity_max_abs: float
    parity_label_agreement: float | None
    repository: Path
    server_log: Path
    served: list[ProtocolCheck]
    loadtest_passed: bool
    loadtest: dict[str, float | None]
    loadtest_report: Path | None
    summary_json: Path
    seconds: float


def pytorch_labels(checkpoint: Path, texts: list[str], max_length: int) -> list[str]:
    """The fine-tuned model's own predictions: the reference the served labels must agree with."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from triton_bundle.hf import quiet_offline

    quiet_offline()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    labels: list[str] = []
    with torch.no_grad():
        for start in range(0, len(texts), 32):
            enc = tokenizer(
                texts[start : start + 32],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            labels += [model.config.id2label[i] for i in model(**enc).logits.argmax(-1).tolist()]
    return labels


def _step(number: int, title: str, total: int = 6) -> None:
    console.rule(f"[bold cyan]{number}/{total} {title}")


def run_demo(spec: ModelSpec, workdir: Path, repository_dir: Path | None = None) -> DemoSummary:
    from triton_bundle.export.stage import export_model
    from triton_bundle.loadtest.render import print_result
    from triton_bundle.loadtest.stage import Overrides, loadtest_stage
    from triton_bundle.repository.generate import generate_repository
    from triton_bundle.serving.local_triton import LocalTriton

    started = time.perf_counter()
    workdir = Path(workdir)
    repository_dir = repository_dir or Path("model_repository") / spec.name

    _step(1, "fine-tune")
    _finetune_step(spec, workdir)

    _step(2, "export to ONNX + parity with PyTorch")
    exported = export_model(spec, workdir, force=True)
    report = exported.report
    worst = max(o.max_abs for o in report.outputs)
    console.print(
        f"{report.exporter} exporter; {report.examples} real examples at min/opt/max shapes; "
        f"max |logit diff| {worst:.2e}; label agreement {report.label_agreement:.4f}"
    )

    _step(3, "Triton model repository")
    repository = generate_repository(spec, workdir, out_dir=repository_dir, target="local", force=True)
    console.print(f"{repository} ({', '.join(sorted(p.name for p in repository.iterdir() if p.is_dir()))})")

    heldout = load_texts(spec.resolve(spec.data.eval), spec.data.text_field, spec.data.label_field)
    checkpoint = exported.checkpoint
    reference = pytorch_labels(checkpoint, heldout.texts, spec.shapes.sequence.max)
    # Gold labels may be ids (GLUE style): compare them as the names the server returns.
    gold = map_gold(heldout.labels, labels_for(spec, exported.record, checkpoint) or [], str(heldout.source))

    _step(4, "local Triton + classify held-out sentences over HTTP and gRPC")
    log_file = workdir / "triton.log"
    config = demo_server_config(spec, repository, log_file)
    server = LocalTriton(config)
    with console.status("starting tritonserver"):
        server.start()
    with server:
        console.print(
            f"HTTP {server.http_url}  gRPC {server.grpc_url}  metrics {server.metrics_url}  (pid {server.pid})"
        )
        checks = [
            _classify_over(protocol, url, spec, heldout.texts, reference, gold)
            for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url))
        ]

        _step(5, "Locust load test")
        result = loadtest_stage(
            spec,
            workdir,
            Overrides(
                url=f"http://{server.http_url}", metrics_url=server.metrics_url, http_url=server.http_url
            ),
            force=True,
        )
        print_result(result)
    _step(6, "summary")
    summary_path = workdir / "summary.json"
    summary = DemoSummary(
        model=spec.name,
        workdir=workdir.resolve(),
        checkpoint=checkpoint,
        onnx=exported.onnx,
        parity_max_abs=worst,
        parity_label_agreement=report.label_agreement,
        repository=repository,
        server_log=log_file.resolve(),
        served=checks,
        loadtest_passed=result.passed,
        loadtest=_loadtest_numbers(result.client),
        loadtest_report=result.artifacts.get("summary_md"),
        summary_json=summary_path.resolve(),
        seconds=time.perf_counter() - started,
    )
    write_text_atomic(summary_path, summary.model_dump_json(indent=2))
    print_summary(summary)
    return summary


def _finetune_step(spec: ModelSpec, workdir: Path) -> None:
    from triton_bundle.finetune import finetune

    if spec.finetune is None:
        console.print(f"skipped: the spec serves its own checkpoint ({spec.resolve(spec.source.path)})")
        return
    tuned = finetune(spec, workdir, force=True)
    accuracy = "n/a (no labels)" if tuned.eval_accuracy is None else f"{tuned.eval_accuracy:.3f}"
    console.print(f"{tuned.train_examples} examples, {tuned.seconds:.0f}s, held-out accuracy {accuracy}")


def _classify_over(
    protocol: str, url: str, spec: ModelSpec, texts: list[str], reference: list[str], gold
) -> ProtocolCheck:
    """Classify the held-out texts through the served ensemble and compare with PyTorch and the gold labels."""
    from triton_bundle.client.client import TritonClient
    from triton_bundle.repository.contract import entry_model

    t0 = time.perf_counter()
    with TritonClient(url, protocol) as client:
        results = client.classify(entry_model(spec.name, spec.task), texts)
    served = [r.labels[0] for r in results]
    agree = sum(a == b for a, b in zip(served, reference, strict=True)) / len(reference)
    accurate = gold_accuracy(served, gold)
    shown = "n/a (no labels)" if accurate is None else f"{accurate:.3f}"
    console.print(
        f"{protocol}: {len(served)} sentences, agreement with PyTorch {agree:.4f}, accuracy {shown}"
    )
    return ProtocolCheck(
        protocol=protocol,
        sentences=len(served),
        agreement_with_pytorch=agree,
        accuracy=accurate,
        seconds=time.perf_counter() - t0,
    )


def _loadtest_numbers(client) -> dict[str, float]:
    return {
        "p50_ms": client.latency.p50_ms,
        "p95_ms": client.latency.p95_ms,
        "p99_ms": client.latency.p99_ms,
        "rps": client.rps,
        "requests": float(client.requests),
        "failures": float(client.failures),
    }


def print_summary(summary: DemoSummary) -> None:
    table = Table(title=f"triton-bundle demo: {summary.model} ({summary.seconds:.0f}s)", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("checkpoint", str(summary.checkpoint))
    table.add_row("ONNX", f"{summary.onnx}  (max |diff| {summary.parity_max_abs:.1e})")
    table.add_row("model repository", str(summary.repository))
    table.add_row("server log", str(summary.server_log))
    for check in summary.served:
        accuracy = "n/a" if check.accuracy is None else f"{check.accuracy:.2%}"
        table.add_row(
            f"served over {check.protocol}",
            f"{check.sentences} held-out sentences: agreement with PyTorch {check.agreement_with_pytorch:.2%}, "
            f"accuracy {accuracy}",
        )
    lt = summary.loadtest
    table.add_row(
        "load test",
        f"p50 {_ms(lt['p50_ms'])}, p95 {_ms(lt['p95_ms'])}, p99 {_ms(lt['p99_ms'])}, {lt['rps']:.1f} req/s, "
        f"{lt['requests']:.0f} requests, {lt['failures']:.0f} errors; SLO gate "
        + ("[green]PASSED" if summary.loadtest_passed else "[red]FAILED"),
    )
    table.add_row("load test report", str(summary.loadtest_report))
    table.add_row("summary JSON", str(summary.summary_json))
    console.print(table)
