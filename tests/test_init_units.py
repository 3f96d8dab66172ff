"""init's parts on their own: task detection from configs, data fields, limits, and safe writing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import transformers
from fixtures.export_builders import MODELS_FILE, save_module_weights, save_text_checkpoint, write_texts
from typer.testing import CliRunner

from triton_bundle.atomic import ArtifactExistsError
from triton_bundle.cli import app
from triton_bundle.data import DataError
from triton_bundle.export.errors import SourceModuleError
from triton_bundle.init.checkpoint import sequence_limit
from triton_bundle.init.datafile import inspect_image_data, inspect_text_data
from triton_bundle.init.detect import DetectionError, detect_task, supported_tasks
from triton_bundle.init.stage import InitError, InitOptions, default_name, init_spec

TINY = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}


@pytest.mark.parametrize(
    ("config", "task"),
    [
        (
            transformers.BertConfig(architectures=["BertForSequenceClassification"], **TINY),
            "text-classification",
        ),
        (
            transformers.RobertaConfig(architectures=["RobertaForTokenClassification"], **TINY),
            "token-classification",
        ),
        (transformers.BertConfig(architectures=["BertModel"], **TINY), "feature-extraction"),
        (transformers.BertConfig(architectures=["BertForMaskedLM"], **TINY), "feature-extraction"),
        (transformers.ViTConfig(architectures=["ViTForImageClassification"], **TINY), "image-classification"),
        (
            transformers.ConvNextConfig(architectures=["ConvNextForImageClassification"]),
            "image-classification",
        ),
        (transformers.BertConfig(**TINY), "feature-extraction"),  # no head recorded: the encoder
    ],
)
def test_task_comes_from_the_configs_head(config, task):
    detection = detect_task(config)
    assert detection.detector.task == task
    assert (config.architectures or ["no architectures"])[0] in detection.reason


def test_a_head_the_spec_does_not_accept_yet_is_named():
    config = transformers.GPT2Config(architectures=["GPT2LMHeadModel"], n_layer=1, n_embd=32, n_head=2)
    if "text-generation" in supported_tasks():  # once the generation task lands, init writes it
        assert detect_task(config).detector.task == "text-generation"
    else:
        with pytest.raises(DetectionError, match="text-generation"):
            detect_task(config)


def test_an_unknown_head_lists_what_init_reads():
    config = transformers.BertConfig(architectures=["BertForQuestionAnswering"], **TINY)
    with pytest.raises(DetectionError, match=r"BertForQuestionAnswering.*--task"):
        detect_task(config)
    assert detect_task(config, task="feature-extraction").detector.task == "feature-extraction"


def test_sequence_limit_is_the_tighter_of_tokenizer_and_positions():
    class Tokenizer:
        model_max_length = 48

    roberta = transformers.RobertaConfig(max_position_embeddings=130, pad_token_id=1, **TINY)
    assert sequence_limit(roberta, Tokenizer())[0] == 48
    Tokenizer.model_max_length = int(1e30)  # "no limit" sentinel
    limit, why = sequence_limit(roberta, Tokenizer())
    assert limit == 128 and "positions start after padding" in why
    assert sequence_limit(transformers.BertConfig(max_position_embeddings=96, **TINY), Tokenizer())[0] == 96


def _jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_data_fields_are_found_by_their_usual_names(tmp_path):
    data = _jsonl(
        tmp_path / "d.jsonl", [{"id": 1, "sentence": "hi", "intent": "greet"}, {"id": 2, "sentence": "x"}]
    )
    facts = inspect_text_data(data, need_label=True)
    assert (facts.text_field, facts.label_field, facts.fields) == (
        "sentence",
        "intent",
        ["id", "sentence", "intent"],
    )
    assert facts.label_values == ["greet"]


def test_a_missing_text_or_label_field_lists_the_fields_there(tmp_path):
    data = _jsonl(tmp_path / "d.jsonl", [{"body": "hi", "kind": "greet"}])
    with pytest.raises(DataError, match=r"no text field.*its rows have: body, kind.*--text-field"):
        inspect_text_data(data, need_label=False)
    with pytest.raises(DataError, match=r"no label field.*its rows have: body, kind.*--label-field"):
        inspect_text_data(data, need_label=True, text_field="body")
    with pytest.raises(DataError, match=r"no 'message' field \(--text-field\); its rows have: body, kind"):
        inspect_text_data(data, need_label=False, text_field="message")
    assert inspect_text_data(data, need_label=True, text_field="body", label_field="kind").rows == 1


def test_an_image_list_naming_a_missing_file_is_refused(tmp_path):
    listing = _jsonl(tmp_path / "images.jsonl", [{"file": "nowhere.png", "label": "a"}])
    with pytest.raises(DataError, match=r"nowhere\.png, which does not exist"):
        inspect_image_data(listing, need_label=True)


def test_generic_checkpoint_directories_are_named_after_their_parent(tmp_path):
    assert default_name(tmp_path / "My Intent Model" / "checkpoint-500") == "my-intent-model"
    assert default_name(tmp_path / "bert_NER") == "bert_ner"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("init")
    return save_text_checkpoint(root / "intent", "bert", "text-classification"), write_texts(root / "h.jsonl")


def test_an_existing_spec_is_kept_without_force(checkpoint, tmp_path):
    path, texts = checkpoint
    out = tmp_path / "spec.yaml"
    out.write_text("# mine\n", encoding="utf-8")
    with pytest.raises(InitError, match="already exists; pass --force"):
        init_spec(InitOptions(checkpoint=path, data=texts, out=out))
    assert out.read_text() == "# mine\n"
    init_spec(InitOptions(checkpoint=path, data=texts, out=out, force=True))
    assert out.read_text().startswith("# Written by `triton-bundle init`")


def test_a_failed_init_writes_nothing(checkpoint, tmp_path):
    path, _ = checkpoint
    bad = _jsonl(tmp_path / "bad.jsonl", [{"body": "hi"}])
    with pytest.raises(DataError):
        init_spec(InitOptions(checkpoint=path, data=bad, out=tmp_path / "spec.yaml"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]  # no spec, no temp directory


def test_the_spec_is_validated_before_it_lands(checkpoint, tmp_path, monkeypatch):
    from triton_bundle.init import sources

    path, texts = checkpoint
    monkeypatch.setattr(sources, "SERVING", sources.Entry("repository", {"max_batch_size": 64}))
    with pytest.raises(InitError, match=r"(?s)spec\.yaml.*max_batch_size 64 exceeds"):
        init_spec(InitOptions(checkpoint=path, data=texts, out=tmp_path / "spec.yaml"))
    assert not (tmp_path / "spec.yaml").exists()


def test_a_module_that_fails_on_its_sample_says_what_it_got(tmp_path):
    weights = save_module_weights(tmp_path / "w.safetensors", "TinyGenerator")
    np.savez(tmp_path / "wrong.npz", latent=np.zeros((3, 7), dtype=np.float32))
    options = InitOptions(
        module=f"{MODELS_FILE}:TinyGenerator",
        weights=weights,
        data=tmp_path / "wrong.npz",
        out=tmp_path / "s.yaml",
    )
    with pytest.raises(
        SourceModuleError, match=r"TinyGenerator failed on the sample \(latent with per-row shapes"
    ):
        init_spec(options)


def test_cli_writes_the_spec_and_prints_the_next_commands(checkpoint, tmp_path):
    path, texts = checkpoint
    out = tmp_path / "spec.yaml"
    result = CliRunner().invoke(app, ["init", str(path), "--data", str(texts), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"triton-bundle export {out}" in result.output
    again = CliRunner().invoke(app, ["init", str(path), "--data", str(texts), "-o", str(out)])
    assert again.exit_code != 0 and isinstance(again.exception, InitError | ArtifactExistsError)


def test_sentence_transformers_layout_sets_pooling_normalisation_and_length(tmp_path):
    from fixtures.export_builders import minilm_path

    from triton_bundle.init.checkpoint import sentence_transformers_settings

    settings, trained, why = sentence_transformers_settings(minilm_path())  # the real all-MiniLM-L6-v2
    assert (settings, trained) == ({"normalize": True, "pooling": "mean"}, 256) and "modules.json" in why
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    modules = [{"type": "sentence_transformers.models.Transformer", "path": ""},
               {"type": "sentence_transformers.models.Pooling", "path": "1_Pooling"}]  # fmt: skip
    (tmp_path / "modules.json").write_text(json.dumps(modules))
    assert sentence_transformers_settings(tmp_path)[:2] == ({"normalize": False, "pooling": "cls"}, None)
    assert sentence_transformers_settings(tmp_path / "plain") == ({}, None, "")


def test_init_mistakes_end_in_one_line_from_the_console_script(checkpoint, tmp_path, monkeypatch, capsys):
    import sys

    from triton_bundle.cli import main

    path, _ = checkpoint
    bad = _jsonl(tmp_path / "tickets.jsonl", [{"id": 1, "body": "where is my order"}])
    for args, expected in (
        ([str(path), "--data", str(bad)], "has no text field"),
        (
            [str(path), "--data", str(bad), "--text-field", "body", "--kwargs", "{oops"],
            "--kwargs is not valid JSON",
        ),
        (
            [str(tmp_path / "nowhere"), "--data", str(bad), "--text-field", "body"],
            "checkpoint directory not found",
        ),
    ):
        monkeypatch.setattr(sys, "argv", ["triton-bundle", "init", *args, "-o", str(tmp_path / "s.yaml")])
        with pytest.raises(SystemExit) as done:
            main()
        err = capsys.readouterr().err.strip()
        assert done.value.code == 2 and len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "s.yaml").exists()
