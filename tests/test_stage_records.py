"""Typed stage records: each stage's record round-trips through manifest.json typed, an unreadable one
says which stage to re-run, and concurrent recorders (two engine builds) both keep their entries."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from triton_bundle.engine.manifest import ProfileDims
from triton_bundle.engine.record import EngineBuild, EngineRecord
from triton_bundle.export.record import DecoderShape, ExportDetails, ExportRecord
from triton_bundle.manifest import Manifest, MissingStageError, StageRecord, StaleRecordError
from triton_bundle.precision.record import GateCheck, GateSummary, PrecisionDetails, PrecisionRecord


def _export(tmp_path: Path) -> ExportRecord:
    return ExportRecord(
        artifacts={"onnx": tmp_path / "onnx" / "model.onnx"},
        details=ExportDetails(
            task="text-generation",
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            labels=["neg", "pos"],
            decoder=DecoderShape(layers=2, kv_heads=2, head_dim=16, vocab_size=100),
            tokenizer="BertTokenizerFast",  # a modality extra: kept, not modelled
        ),
    )


def test_typed_records_round_trip_through_plain_json(tmp_path: Path) -> None:
    gate = GateSummary(
        passed=False,
        metric="label_agreement",
        value=0.9,
        budget=0.99,
        margin=-0.09,
        checks=[
            GateCheck(name="label_agreement", value=0.9, limit=0.99, higher_is_better=True, passed=False)
        ],
        tensorrt_compatible=True,
    )
    manifest = Manifest(model="m")
    manifest.record(_export(tmp_path))
    manifest.record(PrecisionRecord(details=PrecisionDetails(gates={"int8": gate}), passed=False))
    manifest.save(tmp_path)

    on_disk = json.loads((tmp_path / "manifest.json").read_text())
    assert on_disk["stages"]["export"]["details"]["input_names"] == ["input_ids", "attention_mask"]
    assert on_disk["stages"]["export"]["details"]["tokenizer"] == "BertTokenizerFast"
    assert on_disk["stages"]["precision"]["details"]["gates"]["int8"]["passed"] is False

    again = Manifest.load(tmp_path, "m")
    export = again.need(ExportRecord)
    assert export.io() == (["input_ids", "attention_mask"], ["logits"])
    assert export.details.decoder == DecoderShape(layers=2, kv_heads=2, head_dim=16, vocab_size=100)
    assert export.artifact("onnx") == tmp_path.resolve() / "onnx" / "model.onnx"
    gate_again = again.need(PrecisionRecord).gate("int8")
    assert gate_again == gate and "failed: label_agreement 0.9000" in gate_again.describe()
    assert again.get(EngineRecord) is None
    with pytest.raises(MissingStageError, match=r"'engine' stage has not run .*triton-bundle build SPEC"):
        again.need(EngineRecord)


def test_a_record_this_version_cannot_read_names_the_stage_to_rerun(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(
        json.dumps(
            {
                "model": "m",
                "stages": {
                    "precision": {"stage": "precision", "details": {"gates": {"int8": {"verdict": "ok"}}}},
                    "export": {"stage": "export", "details": {"input_names": "input_ids"}},
                },
            }
        )
    )
    manifest = Manifest.load(tmp_path, "m")
    with pytest.raises(
        StaleRecordError, match=r"'precision' record .*gates\.int8\.passed.*triton-bundle precision"
    ):
        manifest.need(PrecisionRecord)
    with pytest.raises(
        StaleRecordError, match=r"'export' record .*input_names.*re-run .*triton-bundle export"
    ):
        manifest.need(ExportRecord)
    assert manifest.require("export", "-").details == {"input_names": "input_ids"}, "stored data untouched"


def test_an_export_record_without_graph_names_asks_for_a_new_export(tmp_path: Path) -> None:
    manifest = Manifest(model="m")
    manifest.record(StageRecord(stage="export", artifacts={"onnx": tmp_path / "model.onnx"}))
    with pytest.raises(StaleRecordError, match=r"names no graph inputs.*triton-bundle export SPEC"):
        manifest.need(ExportRecord).io()


def _record_build(workdir: str, key: str, start) -> None:
    start.wait()
    for _ in range(20):  # many short updates, interleaved with the other process's
        with Manifest.locked(Path(workdir), "m") as manifest:
            record = manifest.get(EngineRecord) or EngineRecord()
            count = int(record.metrics.get(f"{key}_writes", 0)) + 1
            record.metrics[f"{key}_writes"] = count
            record.artifacts[key] = Path(workdir) / "engines" / key
            record.details[key] = EngineBuild(
                mode="aot",
                passed=True,
                source_onnx="x.onnx",
                profile_source="spec",
                profile=ProfileDims(shapes={}),
            )
            manifest.record(record)


def test_two_processes_recording_at_once_both_keep_their_entries(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [
        context.Process(target=_record_build, args=(str(tmp_path), k, start)) for k in ("fp16", "int8")
    ]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    record = Manifest.load(tmp_path, "m").need(EngineRecord)
    assert set(record.details) == {"fp16", "int8"}
    assert record.metrics == {"fp16_writes": 20.0, "int8_writes": 20.0}, "no update was lost"
