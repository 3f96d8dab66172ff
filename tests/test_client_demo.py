"""The client against the real demo deployment: the fine-tuned MiniLM intent classifier exported to ONNX,
put in a generated model repository (tokenizer -> model -> postprocess ensemble) and served by a local
Triton (session fixtures in conftest.py). Held-out texts, both protocols, sync and asyncio.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from triton_bundle.client.cli import infer_command
from triton_bundle.client.client import AsyncTritonClient, ClientOptions, TritonClient
from triton_bundle.client.errors import InvalidInputError
from triton_bundle.data import load_texts
from triton_bundle.repository.contract import LABELS_OUTPUT, SCORES_OUTPUT, TEXT_INPUT

pytestmark = pytest.mark.slow

PROTOCOLS = ["http", "grpc"]
SPLIT = 8  # rows per request the client is told to send: the held-out set needs many requests


@pytest.fixture(scope="module")
def heldout(demo_spec) -> tuple[list[str], list[str]]:
    data = load_texts(
        demo_spec.resolve(demo_spec.data.eval), demo_spec.data.text_field, demo_spec.data.label_field
    )
    return data.texts[:60], [str(label) for label in data.labels[:60]]


def _url(server, protocol: str) -> str:
    return f"{protocol}://{server.http_url if protocol == 'http' else server.grpc_url}"


@pytest.fixture(scope="module")
def one_by_one(demo_server, demo_spec, heldout):
    """Reference answers: one text per request, nothing concurrent."""
    texts, _ = heldout
    options = ClientOptions(concurrency=1)
    with TritonClient(_url(demo_server, "http"), options=options) as client:
        return [client.classify(demo_spec.name, [text], probabilities=True)[0] for text in texts]


def _same(results, reference) -> None:
    assert [r.text for r in results] == [r.text for r in reference]
    assert [r.labels for r in results] == [r.labels for r in reference]
    np.testing.assert_allclose([r.scores for r in results], [r.scores for r in reference], atol=1e-4)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_batched_concurrent_results_match_one_by_one_in_order(
    demo_server, demo_spec, heldout, one_by_one, protocol
) -> None:
    texts, gold = heldout
    options = ClientOptions(concurrency=4, max_batch_size=SPLIT)
    with TritonClient(_url(demo_server, protocol), options=options) as client:
        metadata = client.model_metadata(demo_spec.name)
        assert metadata.input(TEXT_INPUT).datatype == "BYTES" and metadata.batched
        results = client.classify(demo_spec.name, texts, probabilities=True)
    _same(results, one_by_one)

    top_k = demo_spec.repository.top_k
    for result in results:
        assert len(result.labels) == len(result.scores) == top_k
        assert result.scores == sorted(result.scores, reverse=True)
        assert sum(result.probabilities) == pytest.approx(1.0, abs=1e-4)
    # The fine-tuned model really classifies: most held-out texts get their gold label first.
    accuracy = np.mean([r.labels[0] == label for r, label in zip(results, gold, strict=True)])
    assert accuracy > 0.6, f"held-out accuracy {accuracy:.2f}"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_async_client_matches_in_order(demo_server, demo_spec, heldout, one_by_one, protocol) -> None:
    texts, _ = heldout

    async def run():
        options = ClientOptions(concurrency=4, max_batch_size=SPLIT)
        async with AsyncTritonClient(_url(demo_server, protocol), options=options) as client:
            halves = await asyncio.gather(
                client.classify(demo_spec.name, texts[:30], probabilities=True),
                client.classify(demo_spec.name, texts[30:], probabilities=True),
            )
            return halves[0] + halves[1]

    _same(asyncio.run(run()), one_by_one)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bad_input_to_the_ensemble_is_rejected_client_side(demo_server, demo_spec, protocol) -> None:
    with TritonClient(_url(demo_server, protocol)) as client:
        with pytest.raises(InvalidInputError, match=r"input 'TEXT' expects BYTES, got INT64"):
            client.infer_tensors(demo_spec.name, {TEXT_INPUT: np.array([[1], [2]])})
        with pytest.raises(InvalidInputError, match=r"model '.*' has no output 'LOGITZ'"):
            client.infer_tensors(demo_spec.name, {TEXT_INPUT: np.array([["hi"]])}, outputs=["LOGITZ"])
        raw = client.infer_tensors(demo_spec.name, {TEXT_INPUT: np.array([["hi"], ["bye"]])})
    assert raw[LABELS_OUTPUT].shape[0] == raw[SCORES_OUTPUT].shape[0] == 2


def test_statistics_cover_the_ensemble_and_its_steps(demo_server, demo_spec, one_by_one) -> None:
    with TritonClient(demo_server.grpc_url, "grpc") as client:
        stats = {s.name: s for s in client.statistics()}
    assert demo_spec.name in stats
    assert stats[demo_spec.name].request_count >= len(one_by_one)
    steps = [s for name, s in stats.items() if name != demo_spec.name and s.execution_count > 0]
    assert steps, "the ensemble's steps ran and report executions"
    assert all(s.average_batch_size >= 1 for s in steps)


def test_infer_command_against_the_demo(demo_server, demo_spec, heldout, tmp_path) -> None:
    texts, _ = heldout
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(texts[:12]) + "\n", encoding="utf-8")
    app = typer.Typer()
    app.command("infer")(infer_command)
    app.command("noop")(lambda: None)  # two commands: typer keeps `infer` as a subcommand
    result = CliRunner().invoke(
        app, ["infer", "-f", str(path), "-u", f"grpc://{demo_server.grpc_url}", "-m", demo_spec.name]
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["text"] for row in rows] == texts[:12]
    assert all(len(row["labels"]) == demo_spec.repository.top_k for row in rows)
