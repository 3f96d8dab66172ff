"""Gold labels written as class ids (GLUE / HF datasets) or as names score the same everywhere.

Regression for integer labels: the precision stage reported accuracy 0.0 for FP32 and every
variant (so the accuracy-drop gate passed anything), and fine-tuning refused them. Tiny BERT and
RoBERTa classifiers made from configs; gold labels chosen from the model's own predictions so the
expected accuracy is known exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures.export_builders import HELDOUT, make_spec, save_text_checkpoint

from triton_bundle.labels import LabelMismatchError, accuracy, map_gold, sort_label_names

NAMES = ["tag_0", "tag_1", "tag_2"]
TEXTS = [json.loads(line)["text"] for line in HELDOUT.read_text(encoding="utf-8").splitlines()[:10]]
CORRECT = 7  # the first 7 gold labels are the model's prediction, the last 3 are not


# --- the mapping ----------------------------------------------------------------------------------


def test_ids_map_through_id2label_and_names_stay_names() -> None:
    by_id = map_gold([0, "2", None, 1], NAMES)
    assert by_id.names == ["tag_0", "tag_2", None, "tag_1"] and by_id.written_as == "ids"
    assert by_id.labelled == [True, True, False, True]
    by_name = map_gold(["tag_1", "tag_0"], NAMES)
    assert by_name.names == ["tag_1", "tag_0"] and by_name.written_as == "names"
    # Label names that are digits ("1".."5" stars) match by name, not as ids shifted by one.
    stars = map_gold(["1", "5", "3"], ["1", "2", "3", "4", "5"])
    assert stars.names == ["1", "5", "3"] and stars.written_as == "names"


def test_unknown_gold_labels_count_as_misses_not_as_skipped() -> None:
    gold = map_gold(["tag_0", "tag_9", None], NAMES)
    assert gold.unknown == ["tag_9"]
    assert accuracy(["tag_0", "tag_0", "tag_1"], gold) == 0.5  # the unlabelled row is left out
    assert gold.for_scoring() == ["tag_0", "<unknown tag_9>"]
    assert accuracy(["tag_0"], map_gold([None], NAMES)) is None  # nothing labelled: no number at all
    assert accuracy(["tag_0"], map_gold(["tag_0"], [])) is None  # a model without label names: none


def test_disjoint_labels_are_an_error_that_shows_both_sides() -> None:
    with pytest.raises(LabelMismatchError) as caught:
        map_gold(["positive", "negative", "neutral", "positive"], NAMES, where="eval.jsonl")
    message = str(caught.value)
    assert "eval.jsonl" in message
    assert "'positive'" in message and "'negative'" in message  # a few gold labels
    assert "'tag_0'" in message and "'tag_2'" in message  # a few model labels
    with pytest.raises(LabelMismatchError):
        map_gold([7, 9], NAMES)  # ids out of range share nothing either


def test_label_order_of_ids_is_numeric() -> None:
    assert sort_label_names(["10", "2", "0", "1"]) == ["0", "1", "2", "10"]
    assert sort_label_names(["b", "a", "10"]) == ["10", "a", "b"]


# --- every stage that scores gold labels, on two families ----------------------------------------


def _predictions(checkpoint: Path) -> list[int]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    with torch.no_grad():
        enc = tokenizer(TEXTS, padding=True, truncation=True, max_length=32, return_tensors="pt")
        return model(**enc).logits.argmax(-1).tolist()


def _gold_ids(predicted: list[int]) -> list[int]:
    return [p if i < CORRECT else (p + 1) % len(NAMES) for i, p in enumerate(predicted)]


def _write(path: Path, labels: list[object]) -> Path:
    rows = [{"text": t, "label": label} for t, label in zip(TEXTS, labels, strict=True)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module", params=["bert", "roberta"])
def classifier(request, tmp_path_factory: pytest.TempPathFactory):
    """A tiny classifier of each family, exported once, with its own predictions on TEXTS."""
    from triton_bundle.export.stage import export_model

    base = tmp_path_factory.mktemp(f"labels-{request.param}")
    checkpoint = save_text_checkpoint(base / "checkpoint", request.param, "text-classification", seed=3)
    predicted = _predictions(checkpoint)
    eval_file = _write(base / "eval-names.jsonl", [NAMES[g] for g in _gold_ids(predicted)])
    spec = make_spec(
        base,
        name=f"tiny-{request.param}",
        task="text-classification",
        source={"path": str(checkpoint)},
        data={"eval": str(eval_file)},
    )
    export_model(spec, base / "work")
    return spec, base, checkpoint, predicted


def _precision(spec, base: Path, eval_file: Path, where: str):
    from triton_bundle.manifest import Manifest
    from triton_bundle.precision.stage import make_variants

    workdir = base / where  # holds only the export record: each call gates on its own data
    manifest = Manifest(model=spec.name)
    manifest.record(
        Manifest.load(base / "work", spec.name).require("export", "fixture").model_copy(deep=True)
    )
    manifest.save(workdir)
    spec = spec.model_copy(deep=True)
    spec.data.eval = eval_file
    return make_variants(spec, workdir, variants=["fp16"])


@pytest.mark.slow
def test_precision_accuracy_is_the_same_for_ids_and_names(classifier) -> None:
    spec, base, _, predicted = classifier
    gold = _gold_ids(predicted)
    as_names = _precision(spec, base, _write(base / "names.jsonl", [NAMES[g] for g in gold]), "names")
    as_ids = _precision(spec, base, _write(base / "ids.jsonl", gold), "ids")
    for result in (as_names, as_ids):
        assert result.fp32.accuracy == pytest.approx(CORRECT / len(TEXTS))
        assert result.reports["fp16"].metrics.accuracy_fp32 == pytest.approx(CORRECT / len(TEXTS))
    assert as_ids.fp32.macro_f1 == pytest.approx(as_names.fp32.macro_f1)


@pytest.mark.slow
def test_precision_refuses_gold_labels_the_model_does_not_have(classifier) -> None:
    spec, base, _, _ = classifier
    disjoint = _write(base / "disjoint.jsonl", ["positive", "negative"] * 5)
    with pytest.raises(LabelMismatchError, match=r"'positive'.*'tag_0'"):
        _precision(spec, base, disjoint, "disjoint")
    assert not (base / "disjoint" / "precision" / "fp16").exists()  # nothing published on a refusal


@pytest.mark.slow
def test_finetune_scoring_and_label_order_take_ids(classifier, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from triton_bundle.data import load_texts
    from triton_bundle.finetune import _accuracy, _label_order

    spec, _, checkpoint, predicted = classifier
    data = load_texts(_write(tmp_path / "ids.jsonl", _gold_ids(predicted)))
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    assert _accuracy(model, tokenizer, data, NAMES, 32) == pytest.approx(CORRECT / len(TEXTS))
    named = spec.model_copy(update={"labels": NAMES})
    labels, gold = _label_order(named, data)
    assert labels == NAMES and gold.names == [NAMES[g] for g in _gold_ids(predicted)]


@pytest.mark.slow
def test_benchmark_heldout_scores_ids_through_the_label_names(classifier, tmp_path: Path) -> None:
    from benchmarks.heldout import Heldout

    spec, _, checkpoint, predicted = classifier
    spec = spec.model_copy(deep=True)
    spec.data.eval = _write(tmp_path / "ids.jsonl", _gold_ids(predicted))
    heldout = Heldout.load(spec, checkpoint, NAMES)
    assert heldout.accuracy([NAMES[p] for p in predicted]) == pytest.approx(CORRECT / len(TEXTS))
    assert np.isclose(heldout.accuracy([NAMES[g] for g in _gold_ids(predicted)]), 1.0)
