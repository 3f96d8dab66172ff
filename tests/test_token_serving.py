"""Token classification end to end: export -> precision -> AOT check -> repository -> a real Triton whose
ensemble answers raw text with the entities transformers' own pipeline finds, for a WordPiece DistilBERT
and a byte-level BPE RoBERTa (the hard case for offsets and word boundaries)."""

from __future__ import annotations

import asyncio
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from fixtures.export_builders import make_spec, write_spec_yaml
from fixtures.token_models import LABELS, pipeline_entities, save_token_checkpoint, texts, write_eval

from triton_bundle.repository import contract
from triton_bundle.repository.python_models.token_aggregation import (
    STRATEGIES,
    AggregationError,
    TokenizerView,
    aggregate,
)

SHAPES = {"batch": {"min": 1, "opt": 4, "max": 8}, "sequence": {"min": 1, "opt": 16, "max": 64}}
# The spec picks each model's default strategy; requests may override it.
DEFAULTS = {"distilbert": "first", "roberta": "simple"}


def _fields(arch: str, checkpoint: Path, eval_file: Path) -> dict:
    return {
        "name": f"tiny-{arch}-ner",
        "task": "token-classification",
        "source": {"path": str(checkpoint)},
        "data": {"eval": str(eval_file)},
        "shapes": SHAPES,
        "repository": {"max_batch_size": 8, "aggregation_strategy": DEFAULTS[arch]},
        "precision": {"variants": ["fp16"], "budget": {"min_label_agreement": 0.95}},
    }


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("token-ckpt")
    return {arch: save_token_checkpoint(root / arch, arch) for arch in DEFAULTS}


@pytest.fixture(scope="module")
def expected(checkpoints) -> dict[tuple[str, str], list[list[dict]]]:
    """transformers' pipeline on the eval texts, per (family, strategy), computed once for the module."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the pipeline warns that BPE words come from a heuristic
        return {
            (arch, strategy): pipeline_entities(checkpoint, strategy, texts())
            for arch, checkpoint in checkpoints.items()
            for strategy in STRATEGIES
        }


def _comparable(entities: list[dict]) -> list[tuple]:
    """The pipeline's dicts and ours side by side: label, word, offsets, index; scores compared apart."""
    return [
        (
            e.get("entity_group", e.get("entity", e.get("label"))),
            e["word"],
            e["start"],
            e["end"],
            e.get("index"),
        )
        for e in entities
    ]


def _assert_same(got: list[list[dict]], expected: list[list[dict]], sentences: list[str]) -> None:
    for sentence, ours, theirs in zip(sentences, got, expected, strict=True):
        assert _comparable(ours) == _comparable(theirs), sentence
        np.testing.assert_allclose([e["score"] for e in ours], [float(e["score"]) for e in theirs], atol=2e-4)


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(DEFAULTS))
def test_grouping_rules_match_the_pipeline_on_pytorch_logits(checkpoints, expected, arch: str) -> None:
    """token_aggregation (the served postprocess's rules) against transformers, same logits, all strategies."""
    import torch
    import transformers
    from tokenizers import Tokenizer

    checkpoint = checkpoints[arch]
    tokenizer = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    view = TokenizerView.of(tokenizer)
    model = transformers.AutoModelForTokenClassification.from_pretrained(checkpoint).eval()
    sentences = texts()
    rows = []
    for sentence in sentences:
        encoding = tokenizer.encode(sentence)
        ids = torch.tensor([encoding.ids])
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0].numpy()
        rows.append(
            (
                sentence,
                np.array(encoding.ids),
                np.array(encoding.offsets),
                encoding.special_tokens_mask,
                logits,
            )
        )
    labels_seen = set()
    for strategy in STRATEGIES:
        got = [aggregate(s, i, o, np.array(m), lg, LABELS, strategy, view) for s, i, o, m, lg in rows]
        _assert_same(got, expected[arch, strategy], sentences)
        labels_seen |= {e["label"] for row in got for e in row}
    assert {"PER", "LOC", "MISC"} <= labels_seen  # the head tags: a test of grouping, not of empty lists
    with pytest.raises(AggregationError, match="expected one of none, simple"):
        aggregate(*rows[0][:4], rows[0][4], LABELS, "mean", view)


# ------------------------------------------------------------------------------------------------ served


@pytest.fixture(scope="module")
def served(checkpoints, tmp_path_factory: pytest.TempPathFactory):
    """Both models through every stage, then one local Triton serving both repositories."""
    from triton_bundle.engine.stage import build_variant
    from triton_bundle.export.stage import export_model
    from triton_bundle.precision.stage import make_variants
    from triton_bundle.repository.generate import generate_repository
    from triton_bundle.serving.local_triton import LocalTriton, ServerConfig

    root = tmp_path_factory.mktemp("token-served")
    eval_file = write_eval(root / "eval.jsonl")
    models = {}
    for arch, checkpoint in checkpoints.items():
        spec = make_spec(root, **_fields(arch, checkpoint, eval_file))
        workdir = root / arch / "artifacts"
        export = export_model(spec, workdir)
        assert export.report.passed and export.report.label_agreement == 1.0
        models[arch] = {"spec": spec, "workdir": workdir}
    # Precision and the TensorRT check on one family (the other only changes the tokenizer).
    spec, workdir = models["distilbert"]["spec"], models["distilbert"]["workdir"]
    models["distilbert"]["precision"] = make_variants(spec, workdir)
    try:
        import tensorrt_rtx  # noqa: F401

        models["distilbert"]["aot"] = [build_variant(spec, workdir, v, aot=True) for v in ("fp32", "fp16")]
    except ImportError:
        models["distilbert"]["aot"] = None
    for arch, entry in models.items():
        entry["repository"] = generate_repository(
            entry["spec"], entry["workdir"], out_dir=root / "repos" / arch
        )
    repos = [models[arch]["repository"] for arch in DEFAULTS]
    config = ServerConfig(
        repository=repos[0],
        log_file=root / "triton.log",
        extra_args=[f"--model-repository={repo}" for repo in repos[1:]],
    )
    with LocalTriton(config) as server:
        yield server, models


@pytest.mark.slow
def test_the_token_task_goes_through_every_stage(served) -> None:
    from triton_bundle.manifest import Manifest
    from triton_bundle.repository.validate import validate_repository

    _, models = served
    entry = models["distilbert"]
    fp16 = entry["precision"].reports["fp16"]
    assert fp16.passed and fp16.gate.metric == "label_agreement", fp16.markdown()
    if entry["aot"] is not None:
        assert all(result.passed for result in entry["aot"]), [r.aot.error for r in entry["aot"] if r.aot]
    for arch, item in models.items():
        spec, repository = item["spec"], item["repository"]
        assert validate_repository(repository) == []
        name = spec.name
        expected = {
            name,
            contract.tokenizer_model(name),
            contract.tensor_model(name),
            contract.postprocess_model(name),
        }
        assert {p.name for p in repository.iterdir() if p.is_dir()} == expected
        record = Manifest.load(item["workdir"], name).require("repository", "test")
        assert record.details["models"]["entry"] == contract.entry_model(name, spec.task) == name
        post = (repository / contract.postprocess_model(name) / "config.pbtxt").read_text()
        assert f'string_value: "{DEFAULTS[arch]}"' in post


@pytest.mark.slow
def test_validate_names_a_token_postprocess_without_its_grouping_rules(served, tmp_path: Path) -> None:
    import shutil

    from triton_bundle.repository.validate import validate_repository

    _, models = served
    name = models["roberta"]["spec"].name
    broken = shutil.copytree(models["roberta"]["repository"], tmp_path / "repo")
    (broken / contract.postprocess_model(name) / "1" / "token_aggregation.py").unlink()
    (broken / contract.postprocess_model(name) / "labels.txt").write_text("O\nB-PER\n", encoding="utf-8")
    problems = {(p.model, p.message) for p in validate_repository(broken) if p.severity == "error"}
    post = contract.postprocess_model(name)
    assert (post, "the grouping rules model.py imports are missing") in problems
    assert (post, f"2 labels for {len(LABELS)} classes") in problems


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(DEFAULTS))
def test_served_entities_equal_the_pipeline_for_every_strategy(served, checkpoints, arch: str) -> None:
    from triton_bundle.client import TritonClient

    server, models = served
    name = models[arch]["spec"].name
    sentences = texts()
    with TritonClient(server.http_url) as client, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        default = client.tag(name, sentences)
        _assert_same(
            _dumped(default), pipeline_entities(checkpoints[arch], DEFAULTS[arch], sentences), sentences
        )
        assert [t.text for t in default] == sentences
        for strategy in STRATEGIES:
            tags = client.tag(name, sentences, aggregation=strategy)
            _assert_same(_dumped(tags), pipeline_entities(checkpoints[arch], strategy, sentences), sentences)
        # The offsets point into the text the client sent.
        for tag in client.tag(name, sentences, aggregation="none"):
            for entity in tag.entities:
                assert 0 <= entity.start <= entity.end <= len(tag.text)


def _dumped(tags) -> list[list[dict]]:
    return [[e.model_dump(exclude_none=True) for e in tag.entities] for tag in tags]


@pytest.mark.slow
def test_async_grpc_tag_matches_sync_http_and_bad_strategies_are_named(served) -> None:
    from triton_bundle.client import AsyncTritonClient, InvalidInputError, ServerRejectedError, TritonClient

    server, models = served
    name = models["roberta"]["spec"].name
    sentences = texts()

    async def over_grpc():
        async with AsyncTritonClient(f"grpc://{server.grpc_url}") as client:
            return await client.tag(name, sentences, aggregation="max")

    with TritonClient(server.http_url) as client:
        expected = client.tag(name, sentences, aggregation="max")
        with pytest.raises(InvalidInputError, match="unknown aggregation 'mean'"):
            client.tag(name, sentences, aggregation="mean")
        # A raw request naming an unknown strategy is refused for itself; the server keeps serving.
        raw = {
            contract.TEXT_INPUT: np.array([[b"hello there"]], dtype=object),
            contract.AGGREGATION_INPUT: np.array([[b"mean"]], dtype=object),
        }
        with pytest.raises(ServerRejectedError, match="unknown aggregation strategy 'mean'"):
            client.infer_tensors(name, raw)
        assert client.tag(name, ["hello there"])[0].text == "hello there"
    got = asyncio.run(over_grpc())
    assert [t.model_dump() for t in got] == [t.model_dump() for t in expected]


@pytest.mark.slow
def test_infer_prints_entities_and_loadtest_drives_the_ensemble(served, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from triton_bundle.cli import app
    from triton_bundle.loadtest.settings import Endpoint
    from triton_bundle.loadtest.stage import Overrides, loadtest_stage

    server, models = served
    spec = models["distilbert"]["spec"]
    spec_file = write_spec_yaml(
        tmp_path / "spec.yaml", **_fields("distilbert", spec.source.path, spec.data.eval)
    )
    sentences = ["Ship it to Zürich, please.", "where is my order?"]
    result = CliRunner().invoke(
        app,
        ["infer", *sentences, "--spec", str(spec_file), "-u", server.http_url, "--aggregation", "average"],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["text"] for row in rows] == sentences
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = pipeline_entities(spec.source.path, "average", sentences)
    _assert_same([row["entities"] for row in rows], expected, sentences)

    endpoint = Endpoint(
        protocol="http", url=server.http_url, metrics_url=server.metrics_url, http_url=server.http_url
    )
    run = loadtest_stage(
        spec, tmp_path / "work", Overrides(users=2, duration_s=20, max_requests=60), endpoint=endpoint
    )
    assert run.settings.model == spec.name and run.client.failures == 0 and run.client.requests == 60
    served_by = {m.model: m.requests for m in run.server.models}
    assert served_by.get(contract.postprocess_model(spec.name), 0) >= 60, served_by


@pytest.mark.slow
def test_a_split_tokenizer_batch_pads_offsets_and_marks_padding_special(served) -> None:
    """Clients that call the tokenizer themselves: more rows than max_batch_size come back in chunks of
    different widths; the merge pads the special-token mask with 1, as the server pads it."""
    from triton_bundle.client import TritonClient

    server, models = served
    tokenizer = contract.tokenizer_model(models["roberta"]["spec"].name)
    sentences = [s for s in texts() if s] * 2  # 30 rows: 4 requests of at most 8
    with TritonClient(server.http_url) as client:
        assert client.model_metadata(tokenizer).pad_values == {"input_ids": 1, "special_tokens_mask": 1}
        column = np.array([s.encode() for s in sentences], dtype=object).reshape(-1, 1)
        result = client.infer_tensors(tokenizer, {contract.TEXT_INPUT: column})
    ids, mask = result["input_ids"], result[contract.SPECIAL_TOKENS_MASK]
    offsets = result[contract.OFFSETS]
    assert ids.shape == mask.shape == offsets.shape[:2] and offsets.shape[2] == 2
    padding = ids == 1
    assert padding.any() and (mask[padding] == 1).all() and (offsets[padding] == 0).all()
    real = result["attention_mask"] == 1
    for row, sentence in enumerate(sentences):
        starts, ends = offsets[row][real[row] & (mask[row] == 0)].T
        assert (ends <= len(sentence)).all() and (starts <= ends).all()
