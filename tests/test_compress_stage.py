"""The compress stage end to end on tiny trained teachers (BERT, RoBERTa, DistilBERT): a real smaller
checkpoint that loads with from_pretrained, passes the gate, and is what export, precision and the
repository then use; rejection and --search; embeddings and token classification."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers
from fixtures.compress_builders import compress_spec, save_teacher, write_data
from fixtures.export_builders import write_spec_yaml

from triton_bundle.checkpoints import served_checkpoint
from triton_bundle.compress.stage import compress
from triton_bundle.manifest import Manifest

pytestmark = pytest.mark.slow

FAMILIES = ["bert", "roberta", "distilbert"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_data(tmp_path_factory.mktemp("compress-data"))


@pytest.fixture(scope="module")
def teachers(tmp_path_factory, data):
    root = tmp_path_factory.mktemp("teachers")
    return {arch: save_teacher(root / arch, arch, "text-classification", data) for arch in FAMILIES}


@pytest.fixture(scope="module")
def compressed(tmp_path_factory, teachers, data):
    """Each family compressed once (4 -> 2 layers, half the FFN); shared by the checks below."""
    out = {}
    for arch in FAMILIES:
        base = tmp_path_factory.mktemp(f"compressed-{arch}")
        spec = compress_spec(base, teachers[arch], data)
        out[arch] = (spec, base / "work", compress(spec, base / "work"))
    return out


@pytest.mark.parametrize("arch", FAMILIES)
def test_student_is_a_smaller_checkpoint_that_loads_and_passes(compressed, teachers, arch):
    spec, workdir, result = compressed[arch]
    assert result.passed, result.report.markdown()
    student = transformers.AutoModelForSequenceClassification.from_pretrained(result.student)
    teacher = transformers.AutoModelForSequenceClassification.from_pretrained(teachers[arch])
    config = json.loads((result.student / "config.json").read_text())
    assert config.get("num_hidden_layers", config.get("n_layers")) == 2
    assert config.get("intermediate_size", config.get("hidden_dim")) == 32
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters())
    assert (result.student / "model.safetensors").is_file() and (result.student / "tokenizer.json").is_file()

    report = result.report
    row = report.candidates[0]
    assert row.kept_layers == report.importance.keep(2)  # the most important layers, in order
    assert len(report.importance.layers) == 4 and all(
        len(layer.heads) == 2 for layer in report.importance.layers
    )
    # A trained tiny teacher is confident: pruning may barely move it, so the bar is closeness, not a drop.
    assert row.distill.soft_loss_after < 0.05 and row.distill.steps == 3 * ((232 + 15) // 16)
    assert row.gate.passed and row.gate.metric == "label_agreement"
    assert row.size.flops_per_sequence < report.teacher.size.flops_per_sequence
    assert {s.batch for s in row.speed} == {1, 8} and all(s.sequences_per_s > 0 for s in row.speed)

    record = Manifest.load(workdir, spec.name).stages["compress"]
    assert record.passed and record.artifact("checkpoint") == result.student
    assert record.details["kept_layers"] == row.kept_layers
    assert (workdir / "compress" / "speed_vs_agreement.png").stat().st_size > 10_000
    assert "| teacher | 4 | 64 |" in (workdir / "compress" / "report.md").read_text()


def _assert_gated_student_is_the_saved_one(spec, result, data) -> None:
    """The gate judged the same model that was saved: its agreement is recomputable from disk."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(result.student)
    student = transformers.AutoModelForSequenceClassification.from_pretrained(result.student).eval()
    teacher = transformers.AutoModelForSequenceClassification.from_pretrained(spec.source.path).eval()
    texts = [json.loads(line)["text"] for line in (data / "heldout.jsonl").read_text().splitlines()]
    enc = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    enc = {k: v for k, v in enc.items() if k in inspect.signature(student.forward).parameters}
    with torch.no_grad():
        agree = (student(**enc).logits.argmax(-1) == teacher(**enc).logits.argmax(-1)).float().mean()
    assert float(agree) == pytest.approx(
        result.report.candidates[0].metrics.label_agreement, abs=1 / len(texts)
    )


def test_student_logits_match_the_reloaded_checkpoint(compressed, data):
    spec, _, result = compressed["bert"]
    _assert_gated_student_is_the_saved_one(spec, result, data)


@pytest.mark.parametrize("arch", ["mpnet", "deberta-v2"])
def test_a_family_without_a_known_layout_is_read_from_its_blocks_and_compressed(tmp_path, data, arch):
    """No attribute names known in advance: q / k / v / output and the FFN are found by their shapes."""
    teacher = save_teacher(tmp_path / "teacher", arch, "text-classification", data)
    spec = compress_spec(tmp_path, teacher, data)
    result = compress(spec, tmp_path / "work")
    assert result.passed, result.report.markdown()
    assert result.report.family_layout.startswith("read from the blocks")
    config = json.loads((result.student / "config.json").read_text())
    assert (config["model_type"], config["num_hidden_layers"], config["intermediate_size"]) == (
        arch,
        2,
        32,
    )
    _assert_gated_student_is_the_saved_one(spec, result, data)


def test_export_precision_and_repository_pick_the_student(compressed, teachers, tmp_path):
    from triton_bundle.export.stage import export_model
    from triton_bundle.precision.stage import make_variants
    from triton_bundle.repository.sources import checkpoint_dir

    spec, workdir, result = compressed["distilbert"]
    exported = export_model(spec, workdir, force=True)
    manifest = Manifest.load(workdir, spec.name)
    assert manifest.stages["export"].artifact("checkpoint") == result.student
    assert exported.report.passed
    import onnx

    graph = onnx.load(str(exported.onnx))
    assert sum(1 for n in graph.graph.node if n.op_type == "LayerNormalization") < 2 * 4 + 1
    precision = make_variants(spec, workdir, variants=["int8-dynamic"], force=True)
    assert "int8-dynamic" in precision.reports
    assert checkpoint_dir(spec, manifest) == result.student

    # A changed teacher (a re-run fine-tune) makes the student stale: the teacher is served again.
    weights = teachers["distilbert"] / "model.safetensors"
    original = weights.read_bytes()
    try:
        model = transformers.AutoModelForSequenceClassification.from_pretrained(teachers["distilbert"])
        with torch.no_grad():
            model.classifier.bias.add_(1.0)
        model.save_pretrained(teachers["distilbert"])
        assert served_checkpoint(spec, manifest) == teachers["distilbert"].resolve()
    finally:
        weights.write_bytes(original)
    assert served_checkpoint(spec, manifest) == result.student


def test_a_student_outside_the_budget_is_rejected_and_the_teacher_stays(tmp_path, teachers, data):
    spec = compress_spec(tmp_path, teachers["roberta"], data, search_layers=[1, 2])
    spec.precision.budget.max_abs_error = 1e-9  # no pruned student reproduces logits that closely
    result = compress(spec, tmp_path / "work", search=True)
    assert not result.passed and result.student is None
    assert [c.name for c in result.report.candidates] == ["student-1L-ffn32", "student-2L-ffn32"]
    assert all("max_abs" in " ".join(c.gate.failures()) for c in result.report.candidates)
    assert (tmp_path / "work" / "compress-rejected" / "report.md").is_file()
    assert not (tmp_path / "work" / "compress").exists()
    manifest = Manifest.load(tmp_path / "work", spec.name)
    assert not manifest.stages["compress"].passed
    assert served_checkpoint(spec, manifest) == teachers["roberta"].resolve()


def test_search_via_the_cli_keeps_the_smallest_student_that_passes(tmp_path, teachers, data):
    spec = compress_spec(tmp_path, teachers["bert"], data, search_layers=[1, 2, 3])
    spec.precision.budget.min_label_agreement = 0.5
    fields = json.loads(spec.model_dump_json(exclude={"base_dir"}))
    spec_path = write_spec_yaml(tmp_path / "spec.yaml", **fields)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "240"}
    command = [
        sys.executable,
        "-m",
        "triton_bundle.cli",
        "compress",
        str(spec_path),
        "-w",
        str(tmp_path / "w"),
    ]
    done = subprocess.run([*command, "--search"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Teacher vs students" in done.stdout and "student-1L-ffn32" in done.stdout
    report = json.loads((tmp_path / "w" / "compress" / "report.json").read_text())
    assert report["selected"] == "student-1L-ffn32"
    assert [c["name"] for c in report["candidates"]] == ["student-1L-ffn32"]  # stopped at the first pass

    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 2 and "already exists; pass --force" in again.stderr
    assert "Traceback" not in again.stderr


@pytest.mark.parametrize(
    ("arch", "task"), [("roberta", "feature-extraction"), ("bert", "token-classification")]
)
def test_embedding_and_token_students(tmp_path, data, arch, task):
    teacher = save_teacher(tmp_path / "teacher", arch, task, data)
    spec = compress_spec(tmp_path, teacher, data, task=task)
    spec.precision.budget.min_label_agreement = 0.5
    spec.precision.budget.max_accuracy_drop = 1.0
    result = compress(spec, tmp_path / "work")
    row = result.report.candidates[0]
    assert row.distill.soft_loss_after < row.distill.soft_loss_before
    metric = "mean_cosine" if task == "feature-extraction" else "label_agreement"
    assert row.gate.metric == metric
    assert result.passed, result.report.markdown()
    auto = (
        transformers.AutoModel
        if task == "feature-extraction"
        else transformers.AutoModelForTokenClassification
    )
    student = auto.from_pretrained(result.student)
    assert student.config.num_hidden_layers == 2


def test_distillation_is_deterministic(tmp_path, teachers, data):
    from triton_bundle.compress import importance as imp
    from triton_bundle.compress.batches import in_order, input_names
    from triton_bundle.compress.corpus import build_corpus
    from triton_bundle.compress.distill import distill
    from triton_bundle.compress.objectives import objective_for
    from triton_bundle.compress.prune import StudentShape, build_student
    from triton_bundle.compress.structure import locate

    spec = compress_spec(tmp_path, teachers["bert"], data)
    spec.compress.distill.epochs = 1
    spec.compress.distill.max_length = 32  # the stage caps it at shapes.sequence.max
    teacher = transformers.AutoModelForSequenceClassification.from_pretrained(teachers["bert"]).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(teachers["bert"])
    located, objective, names = locate(teacher), objective_for(spec.task), input_names(tokenizer, teacher)
    corpus = build_corpus(spec, None)
    batches = in_order(tokenizer, corpus.texts[:32], [-1] * 32, names, 32, 16)
    importance = imp.measure(teacher, located, objective, batches, lambda *_: None)
    states = []
    for _ in range(2):
        student = build_student(teacher, located, importance, StudentShape(layers=(0, 3), ffn=32))
        distill(
            objective,
            teacher,
            student,
            tokenizer,
            names,
            corpus,
            spec.compress.distill,
            (0, 3),
            lambda *_: None,
        )
        states.append({k: v.clone() for k, v in student.state_dict().items()})
    assert states[0].keys() == states[1].keys()
    for key in states[0]:
        np.testing.assert_array_equal(states[0][key].numpy(), states[1][key].numpy(), err_msg=key)


@pytest.mark.parametrize("arch", ["bert", "distilbert"])
def test_hidden_state_matching_brings_student_layers_to_the_teacher_layers(tmp_path, teachers, data, arch):
    """TinyBERT-style intermediate matching: each kept layer's output moves toward its teacher layer's."""
    from triton_bundle.compress import importance as imp
    from triton_bundle.compress.batches import in_order, input_names
    from triton_bundle.compress.corpus import build_corpus
    from triton_bundle.compress.distill import distill
    from triton_bundle.compress.objectives import objective_for
    from triton_bundle.compress.prune import StudentShape, build_student
    from triton_bundle.compress.structure import locate

    spec = compress_spec(tmp_path, teachers[arch], data)
    cfg = spec.compress.distill
    cfg.epochs, cfg.max_length, cfg.alpha, cfg.hidden_weight = 2, 32, 1.0, 5.0
    teacher = transformers.AutoModelForSequenceClassification.from_pretrained(teachers[arch]).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(teachers[arch])
    located, objective, names = locate(teacher), objective_for(spec.task), input_names(tokenizer, teacher)
    corpus = build_corpus(spec, None)
    batches = in_order(tokenizer, corpus.texts[:32], [-1] * 32, names, 32, 16)
    importance = imp.measure(teacher, located, objective, batches, lambda *_: None)
    layers = (0, 3)  # the student's 2nd layer must do the work of the teacher's layers 1-3
    student = build_student(teacher, located, importance, StudentShape(layers=layers, ffn=32))
    stats = distill(objective, teacher, student, tokenizer, names, corpus, cfg, layers, lambda *_: None)
    assert stats.hidden_matching
    assert stats.hidden_loss_before is not None and stats.hidden_loss_after is not None
    assert stats.hidden_loss_after < 0.8 * stats.hidden_loss_before
    assert stats.soft_loss_after < stats.soft_loss_before
