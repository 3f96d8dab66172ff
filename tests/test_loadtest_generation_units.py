"""Generation measurements without a server: stream records, worker merges, SSE parsing, the gate."""

from __future__ import annotations

from pathlib import Path

import pytest

from triton_bundle.loadtest.generation import GenerationStats, record_from_arrivals, sse_events
from triton_bundle.loadtest.slo import generation_checks
from triton_bundle.spec import SLOSpec, SpecError, load_spec

SPEC = Path(__file__).parent / "fixtures" / "generation_spec" / "spec.yaml"


def test_record_times_first_token_gaps_and_rate():
    record = record_from_arrivals(10.0, [10.2, 10.25, 10.35], ended_at=10.4)
    assert record.ttft_ms == pytest.approx(200.0)
    assert record.itl_ms == pytest.approx([50.0, 100.0])
    assert record.tokens == 3 and record.tokens_per_s == pytest.approx(3 / 0.4)
    assert record.arrival_offsets_ms() == pytest.approx([200.0, 250.0, 350.0])
    stats = GenerationStats()
    stats.record("u", record_from_arrivals(0.0, [0.5, 1.2, 1.9], ended_at=2.0), ended_at_epoch=1002.0)
    assert stats.tokens_by_second == {1000: 1, 1001: 2}, "tokens land in the second they arrived"
    empty = record_from_arrivals(1.0, [], ended_at=2.0)
    assert empty.ttft_ms is None and empty.itl_ms == [] and empty.tokens_per_s is None


def test_worker_stats_merge_like_one_process():
    records = [record_from_arrivals(0.0, [0.1 * k + 0.01 * i for i in range(k)], 1.0) for k in (1, 3, 5)]
    single, a, b, master = GenerationStats(), GenerationStats(), GenerationStats(), GenerationStats()
    for n, record in enumerate(records):
        single.record(f"u{n}", record, 100.0 + n)
        (a if n % 2 else b).record(f"u{n}", record, 100.0 + n)
    master.merge(a.drain())
    master.merge(b.drain())
    assert a.streams == 0 and a.tokens == 0, "drain resets what was sent to the master"
    assert master.summary(4.0) == single.summary(4.0)
    summary = single.summary(4.0)
    assert summary.tokens == 9 and summary.tokens_per_s == pytest.approx(9 / 4)
    assert summary.itl.samples == 0 + 2 + 4 and summary.ttft.samples == 3
    assert summary.user_tokens_per_s == {"u0": 0.25, "u1": 0.75, "u2": 1.25}


def test_sse_events_survive_chunks_split_anywhere():
    stream = b'data: {"text_output": " a"}\n\ndata: {"text_output": " b"}\n\ndata: {"error": "bad"}\n\n'
    for size in (1, 3, 7, len(stream)):
        chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
        assert list(sse_events(chunks)) == [{"text_output": " a"}, {"text_output": " b"}, {"error": "bad"}]


def test_gate_checks_ttft_itl_and_token_floors():
    stats = GenerationStats()
    for _ in range(20):
        stats.record("u", record_from_arrivals(0.0, [0.1, 0.12, 0.14], 0.15), 1.0)
    summary = stats.summary(2.0)  # TTFT 100 ms, ITL 20 ms, 30 tokens/s over the run
    slo = SLOSpec(ttft_p95_ms=150, itl_p95_ms=10, min_tokens_per_s=50, min_stream_tokens_per_s=5)
    checks = {c.name: c for c in generation_checks(slo, summary)}
    assert set(checks) == {"ttft_p95_ms", "itl_p95_ms", "min_tokens_per_s", "min_stream_tokens_per_s"}
    assert checks["ttft_p95_ms"].passed and checks["ttft_p95_ms"].margin == pytest.approx(50)
    assert not checks["itl_p95_ms"].passed and checks["itl_p95_ms"].measured == pytest.approx(20)
    assert not checks["min_tokens_per_s"].passed and checks["min_tokens_per_s"].measured == pytest.approx(30)
    assert checks["min_stream_tokens_per_s"].passed
    unmeasured = generation_checks(slo, None)
    assert unmeasured and not any(c.passed for c in unmeasured), "no streams cannot pass a gate"
    assert generation_checks(SLOSpec(), summary) == [], "SLOs the spec leaves unset are not checked"


def test_generation_spec_drives_prompt_workload():
    from triton_bundle.loadtest.workload import prompt_workload, workload_for

    spec = load_spec(SPEC)
    workload = workload_for(spec)
    assert workload.kind == "prompt"
    assert workload.expected_inputs() == {"text_input": "BYTES", "max_tokens": "INT32"}
    assert all(len(p.split()) <= 6 for p in workload.texts) and "Hello" in workload.texts
    spec.loadtest.generation.prompt_words = None  # falls back to the generation section's
    spec.generation.prompt_words = 2
    assert max(len(p.split()) for p in prompt_workload(spec).texts) == 2


def test_load_test_cannot_ask_for_more_tokens_than_the_server_allows(tmp_path: Path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.read_text() + "generation: {max_context: 64, max_new_tokens: 4}\n")
    with pytest.raises(SpecError, match=r"max_tokens 8 exceeds generation\.max_new_tokens 4"):
        load_spec(spec)


def test_generation_slo_fields_refuse_nonsense(tmp_path: Path):
    bad = tmp_path / "spec.yaml"
    text = SPEC.read_text().replace("ttft_p95_ms: 2000", "ttft_p95_ms: -5")
    bad.write_text(text.replace("max_tokens: 8", "max_tokens: 0"))
    (tmp_path / "prompts.jsonl").write_text('{"text": "hi"}\n')
    with pytest.raises(SpecError) as err:
        load_spec(bad)
    assert "loadtest.slo.ttft_p95_ms" in str(err.value) and "loadtest.generation.max_tokens" in str(err.value)
