"""The served decoder (real local Triton, decoupled Python model): greedy output equal to PyTorch's,
streaming over HTTP SSE and gRPC, in-flight batching, bad input refused per request. GPT-2 and Llama."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from triton_bundle.client.errors import InvalidInputError
from triton_bundle.client.generation import AsyncTextGenerator, TextGenerator
from triton_bundle.export.decoder_parity import torch_greedy
from triton_bundle.export.decoder_stage import load_decoder
from triton_bundle.generation.prompts import heldout
from triton_bundle.manifest import Manifest

pytestmark = pytest.mark.slow
NEW_TOKENS = 16


def _reference(spec, workdir, prompts, new_tokens=NEW_TOKENS):
    model, tokenizer = load_decoder(Manifest.load(workdir, spec.name).stages["export"].artifact("checkpoint"))
    backend = tokenizer.backend_tokenizer
    out = []
    for prompt in prompts:
        ids = tokenizer(prompt)["input_ids"]
        tokens = torch_greedy(model, ids, new_tokens, tokenizer.pad_token_id, tokenizer.eos_token_id)
        tokens = [t for t in tokens if t != tokenizer.eos_token_id]
        out.append((tokens, backend.decode(tokens, skip_special_tokens=True)))
    return out


def _full_length_prompt(spec, workdir, new_tokens):
    """The first held-out prompt whose greedy continuation does not stop early."""
    for prompt in heldout(spec).prompts:
        if len(_reference(spec, workdir, [prompt], new_tokens)[0][0]) == new_tokens:
            return prompt
    pytest.fail(f"every held-out prompt hits end-of-text within {new_tokens} greedy tokens")


def test_served_greedy_equals_pytorch_under_concurrency(textgen_server):
    """Prompts sent at once share the in-flight batch (ragged caches); each must equal generate()."""
    spec, workdir, server = textgen_server
    prompts = heldout(spec).prompts[:6]
    client = TextGenerator(f"grpc://{server.grpc_url}")
    with ThreadPoolExecutor(len(prompts)) as pool:
        chunks = list(pool.map(lambda p: list(client.stream(spec.name, p, NEW_TOKENS)), prompts))
    for (tokens, text), got in zip(_reference(spec, workdir, prompts), chunks, strict=True):
        assert "".join(c.text for c in got) == text
        assert len(got) == len(tokens)  # one response per generated token


def test_http_generate_and_sse_stream_agree(textgen_server):
    spec, _, server = textgen_server
    prompt = heldout(spec).prompts[0]
    client = TextGenerator(f"http://{server.http_url}")
    whole = client.generate(spec.name, prompt, NEW_TOKENS).text
    chunks = list(client.stream(spec.name, prompt, NEW_TOKENS))
    assert "".join(c.text for c in chunks) == whole and len(chunks) >= 1
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(a.at_s <= b.at_s for a, b in itertools.pairwise(chunks))
    reply = requests.post(
        f"http://{server.http_url}/v2/models/{spec.name}/generate_stream",
        json={"text_input": prompt, "max_tokens": 3, "stream": True},
        stream=True,
        timeout=120,
    )
    events = [line for line in reply.iter_lines() if line.startswith(b"data:")]
    assert reply.headers["content-type"].startswith("text/event-stream") and 1 <= len(events) <= 3


def test_async_grpc_and_http_streams(textgen_server):
    spec, workdir, server = textgen_server
    prompt = _full_length_prompt(spec, workdir, 8)

    async def run(url):
        client = AsyncTextGenerator(url)
        return [c.text async for c in client.stream(spec.name, prompt, 8)]

    grpc_text = asyncio.run(run(f"grpc://{server.grpc_url}"))
    http_text = asyncio.run(run(f"http://{server.http_url}"))
    assert grpc_text == http_text and len(grpc_text) == 8
    assert (
        "".join(grpc_text) == TextGenerator(f"grpc://{server.grpc_url}").generate(spec.name, prompt, 8).text
    )


def _settled(race, tries: int = 3) -> tuple[bool, list]:
    """Whether one of up to `tries` runs of a timing race came out as expected, and every run's outcome.

    The scheduling tests below race a client-side send against the tiny model's whole decode (~0.4 s
    on 2 cores): a machine that stalls the send for that long loses one run without any fault in the
    server. A server that really schedules wrong (serial decoding, slots held) loses every run.
    """
    outcomes = []
    for attempt in range(tries):
        if attempt:
            time.sleep(2.0)  # a lost run's leftover sequences finish (~0.4 s) before the next starts
        expected, outcome = race()
        outcomes.append(outcome)
        if expected:
            return True, outcomes
    return False, outcomes


def _race_short_against_long(spec, workdir, server):
    import queue

    import tritonclient.grpc as grpcclient

    from triton_bundle.client.generation import GenerationRequest, _grpc_inputs

    long_tokens = spec.generation.max_new_tokens
    long_prompt = _full_length_prompt(spec, workdir, long_tokens)  # the long request really is long
    short_inputs = _grpc_inputs(GenerationRequest(heldout(spec).prompts[2], 2), True, grpcclient)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    events: queue.Queue = queue.Queue()
    counts = {"long": 0, "short": 0}

    def on_response(result, error):
        if error is not None:
            events.put(("error", str(error)))
            return
        response = result.get_response()
        if response.outputs:
            counts[response.id] += 1
        if counts["long"] == 2 and response.id == "long" and response.outputs:
            client.async_stream_infer(
                spec.name, short_inputs, request_id="short", enable_empty_final_response=True
            )
        if response.parameters["triton_final_response"].bool_param:
            events.put((response.id, counts[response.id]))

    client.start_stream(callback=on_response)
    try:
        client.async_stream_infer(
            spec.name,
            _grpc_inputs(GenerationRequest(long_prompt, long_tokens), True, grpcclient),
            request_id="long",
            enable_empty_final_response=True,
        )
        finished = [events.get(timeout=120), events.get(timeout=120)]
    finally:
        client.stop_stream()
        client.close()
    return finished == [("short", 2), ("long", long_tokens)], finished


def test_request_arriving_mid_decode_joins_and_finishes_first(textgen_server):
    """In-flight batching: a short request sent while a long one decodes finishes before it.

    Both go over one gRPC stream; the short one is sent from the response callback as soon as the long
    one's second token arrives, so it reaches the server while the long one still has most of its
    tokens to go (a client connecting afresh could take longer than the tiny model's whole decode).
    """
    won, outcomes = _settled(lambda: _race_short_against_long(*textgen_server))
    assert won, outcomes


@pytest.mark.parametrize(
    "fields,expected",
    [
        ({"text_input": "", "max_tokens": 4}, "text_input is empty"),
        ({"text_input": "Hello", "max_tokens": 0}, "max_tokens must be between 1 and"),
        ({"text_input": "Hello", "max_tokens": 100000}, "max_tokens must be between 1 and"),
        ({"text_input": "Hello " * 1000, "max_tokens": 4}, "exceed the model's context"),
        ({"text_input": "Hello", "max_tokens": 4, "temperature": -1.0}, "temperature must be in"),
        ({"text_input": "Hello", "max_tokens": 4, "top_p": 1.5}, "top_p must be in (0, 1]"),
        ({"text_input": "Hello", "max_tokens": 4, "top_k": -3}, "top_k must be >= 0"),
    ],
)
def test_bad_input_gets_400_for_that_request_only(textgen_server, fields, expected):
    spec, _, server = textgen_server
    reply = requests.post(f"http://{server.http_url}/v2/models/{spec.name}/generate", json=fields, timeout=60)
    assert reply.status_code == 400 and reply.json()["error"].startswith("invalid request: ")
    assert expected in reply.json()["error"]
    args = {k: v for k, v in fields.items() if k not in ("text_input", "max_tokens")}
    with pytest.raises(InvalidInputError, match=expected.split(" (")[0]):
        list(
            TextGenerator(f"grpc://{server.grpc_url}").stream(
                spec.name, fields["text_input"], fields["max_tokens"], **args
            )
        )
    assert TextGenerator(f"http://{server.http_url}").generate(spec.name, "Thanks for", 2).text is not None


def test_sampling_is_seeded_and_stop_strings_cut(textgen_server):
    spec, _, server = textgen_server
    client = TextGenerator(f"http://{server.http_url}")
    prompt = heldout(spec).prompts[3]
    kwargs = {"temperature": 1.0, "top_k": 50, "top_p": 0.95, "seed": 7}
    assert (
        client.generate(spec.name, prompt, 12, **kwargs).text
        == client.generate(spec.name, prompt, 12, **kwargs).text
    )
    full = client.generate(spec.name, prompt, 12).text
    if len(full.strip()) >= 2:
        stop = full.strip()[1:3]
        cut = client.generate(spec.name, prompt, 12, stop=(stop,)).text
        assert stop not in cut and full.startswith(cut)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_generate_cli_streams_then_prints_timings(textgen_server, protocol):
    import re

    from typer.testing import CliRunner

    from triton_bundle.cli import app

    spec, _, server = textgen_server
    url = server.http_url if protocol == "http" else server.grpc_url
    prompt = heldout(spec).prompts[4]
    result = CliRunner().invoke(
        app,
        ["generate", prompt, "--max-tokens", "10", "--stream", "-m", spec.name, "-u", f"{protocol}://{url}"],
    )
    assert result.exit_code == 0, result.output
    text, last = result.output.rstrip("\n").rsplit("\n", 1)
    match = re.fullmatch(r"\[TTFT (\d+) ms \| ([\d.]+) tokens/s \| (\d+) tokens\]", last)
    assert match and 1 <= int(match.group(3)) <= 10
    assert text == TextGenerator(f"{protocol}://{url}").generate(spec.name, prompt, 10).text
    bad = CliRunner().invoke(
        app, ["generate", "", "--max-tokens", "4", "-m", spec.name, "-u", f"{protocol}://{url}"]
    )
    # The console script turns this BundleError into one red line and exit status 2.
    assert isinstance(bad.exception, InvalidInputError) and "text_input is empty" in str(bad.exception)


def test_cancelled_sequence_frees_its_slot_at_once(textgen_server):
    """Slots full: long requests first, then one more that is cancelled after its first token. A short
    request waiting for a slot gets the cancelled one's at once and finishes first; were the slot held
    until that sequence's tokens ran out, the earliest long request would finish before it.
    (A race in principle: the cancel must reach the server within the long requests' ~440 remaining steps.)"""
    spec, workdir, server = textgen_server

    def race():
        import queue

        import tritonclient.grpc as grpcclient

        from triton_bundle.client.generation import GenerationRequest, _grpc_inputs

        slots, long_tokens = spec.generation.max_sequences, spec.generation.max_new_tokens
        long_inputs = _grpc_inputs(
            GenerationRequest(_full_length_prompt(spec, workdir, long_tokens), long_tokens), True, grpcclient
        )
        short_inputs = _grpc_inputs(GenerationRequest(heldout(spec).prompts[2], 2), True, grpcclient)
        others = grpcclient.InferenceServerClient(server.grpc_url)
        doomed = grpcclient.InferenceServerClient(server.grpc_url)
        finished: queue.Queue = queue.Queue()
        seen: set[str] = set()
        longs = {f"long-{i}" for i in range(slots - 1)}

        def on_doomed(result, error):
            if "short" not in seen:  # its first token: every slot is busy, so the short request must wait
                seen.add("short")
                others.async_stream_infer(
                    spec.name, short_inputs, request_id="short", enable_empty_final_response=True
                )
                threading.Thread(target=doomed.stop_stream, kwargs={"cancel_requests": True}).start()

        def on_response(result, error):
            if error is not None:
                finished.put(f"error: {error}")
                return
            response = result.get_response()
            if response.id in longs and response.id not in seen:
                seen.add(response.id)
                if longs <= seen:  # every long request holds a slot: the cancelled one takes the last
                    doomed.async_stream_infer(spec.name, long_inputs, request_id="cancelled")
            if response.parameters["triton_final_response"].bool_param:
                finished.put(response.id)

        doomed.start_stream(callback=on_doomed)
        others.start_stream(callback=on_response)
        try:
            for name in sorted(longs):
                others.async_stream_infer(
                    spec.name, long_inputs, request_id=name, enable_empty_final_response=True
                )
            order = [finished.get(timeout=180) for _ in range(slots)]
        finally:
            others.stop_stream()
            others.close()
            doomed.close()
        return order[0] == "short" and set(order[1:]) == longs, order

    won, outcomes = _settled(race)
    assert won, outcomes
