"""Compress-stage parts without training: locating blocks per family, targets, data, bad input.

Every bad-input case runs the real stage on a tiny checkpoint and checks that nothing was written.
"""

from __future__ import annotations

import json
import random

import pytest
from fixtures.compress_builders import INTENTS, compress_spec, save_teacher, write_data

from triton_bundle.compress.corpus import augment, build_corpus, gold_ids, mix
from triton_bundle.compress.errors import CompressDataError, PruneTargetError, UnsupportedFamilyError
from triton_bundle.compress.stage import compress
from triton_bundle.compress.structure import locate
from triton_bundle.compress.targets import candidate_counts
from triton_bundle.errors import BundleError
from triton_bundle.manifest import Manifest
from triton_bundle.spec import CompressSpec, SpecError, load_spec

FAMILIES = ["bert", "roberta", "distilbert", "mpnet", "deberta-v2"]
# The attribute paths each family's query projection is found at (the last two are read from the blocks).
QUERY = {
    "bert": "attention.self.query",
    "roberta": "attention.self.query",
    "distilbert": "attention.q_lin",
    "mpnet": "attention.attn.q",
    "deberta-v2": "attention.self.query_proj",
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_data(tmp_path_factory.mktemp("compress-data"), train=40, heldout=16)


@pytest.fixture(scope="module")
def untrained(tmp_path_factory, data):
    """Untrained 4-layer checkpoints per family: structure and bad input need no training."""
    root = tmp_path_factory.mktemp("untrained")
    return {
        arch: save_teacher(root / arch, arch, "text-classification", data, train=False) for arch in FAMILIES
    }


@pytest.mark.parametrize("arch", FAMILIES)
def test_blocks_are_located_by_structure(untrained, arch):
    import transformers

    model = transformers.AutoModelForSequenceClassification.from_pretrained(untrained[arch])
    located = locate(model)
    assert (located.layers, located.heads, located.head_size, located.ffn) == (4, 2, 16, 64)
    assert len(located.blocks(model)) == 4
    ffn_out = located.linear(located.blocks(model)[0], "ffn_out")
    assert ffn_out.in_features == 64 and ffn_out.out_features == 32
    assert located.layout.query == QUERY[arch]
    assert located.layout.name.startswith("read from the blocks") == (arch in ("mpnet", "deberta-v2"))


def test_a_family_without_known_blocks_is_refused(tmp_path, untrained):
    import transformers

    config = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=30522, num_labels=5)
    model = transformers.GPT2ForSequenceClassification(config)
    with pytest.raises(UnsupportedFamilyError, match=r"cannot locate the transformer layers of GPT2"):
        locate(model)


def _targets(untrained, **target):
    import transformers

    model = transformers.AutoModelForSequenceClassification.from_pretrained(untrained["bert"])
    return candidate_counts(CompressSpec(target=target), locate(model), search=False)


def test_targets_resolve_to_layer_counts(untrained):
    assert _targets(untrained, layers=2, ffn_keep=0.5) == ([2], 32)
    assert _targets(untrained, layers=4, ffn_keep=0.25) == ([4], 16)  # FFN only
    counts, ffn = _targets(untrained, speedup=1.9)
    assert ffn == 64 and counts == [2]  # 4 -> 2 layers halves the FLOPs; 3 layers would be 1.33x


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ({"layers": 4}, "compress.target.layers 4 keeps all 4 layers"),
        ({"layers": 9}, "compress.target.layers 9 exceeds the teacher's 4 layers"),
        ({"speedup": 50}, "compress.target.speedup 50 needs fewer than 1 of 4 layers"),
        ({"layers": 2, "ffn_keep": 0.001}, "compress.target.ffn_keep 0.001 keeps no FFN neuron"),
        ({"layers": 2, "heads_per_layer": 1}, "compress.target.heads_per_layer 1"),
        ({"layers": None}, "compress.target names no size"),
    ],
)
def test_a_bad_target_is_refused_before_anything_is_written(tmp_path, untrained, data, target, field):
    spec = compress_spec(tmp_path, untrained["bert"], data, target=target)
    with pytest.raises(PruneTargetError) as caught:
        compress(spec, tmp_path / "work")
    assert field in str(caught.value)
    _nothing_written(tmp_path / "work")


def _nothing_written(workdir):
    assert not (workdir / "compress").exists()
    assert not (workdir / "compress-rejected").exists()
    assert [p.name for p in workdir.iterdir()] == [] if workdir.exists() else True
    assert "compress" not in Manifest.load(workdir, "tiny").stages


def test_no_training_data_names_the_field(tmp_path, untrained, data):
    spec = compress_spec(tmp_path, untrained["roberta"], data)
    spec.data.train = None
    with pytest.raises(CompressDataError, match=r"set data\.train \(or data\.calibration\)"):
        compress(spec, tmp_path / "work")
    _nothing_written(tmp_path / "work")


def test_distilling_on_the_held_out_file_is_refused(tmp_path, untrained, data):
    spec = compress_spec(tmp_path, untrained["distilbert"], data)
    spec.compress.distill.extra = [data / "heldout.jsonl"]
    with pytest.raises(CompressDataError, match=r"compress\.distill\.extra names the held-out data\.eval"):
        compress(spec, tmp_path / "work")
    _nothing_written(tmp_path / "work")


def test_a_task_without_an_objective_names_the_task(tmp_path, untrained, data):
    spec = compress_spec(tmp_path, untrained["bert"], data)
    spec.task = "image-classification"
    with pytest.raises(BundleError, match=r"the spec's task is 'image-classification'"):
        compress(spec, tmp_path / "work")


def test_a_target_that_removes_every_layer_fails_validation_naming_the_field(tmp_path):
    spec_text = tmp_path / "spec.yaml"
    spec_text.write_text(
        "name: x\ntask: text-classification\nsource: {path: ckpt}\ndata: {eval: e.jsonl}\n"
        "compress: {target: {layers: 0}}\n",
        encoding="utf-8",
    )
    with pytest.raises(
        SpecError, match=r"compress\.target\.layers: Input should be greater than or equal to 1"
    ):
        load_spec(spec_text)


def test_gold_labels_map_by_name_or_integer_index():
    names = ["a", "b", "c"]
    assert gold_ids(["b", "2", None, "zzz", "7"], names) == [1, 2, -1, -1, -1]
    assert gold_ids(["b"], None) == [-1]


def test_augmentation_is_seeded_and_changes_the_text():
    text = "my parcel has not moved since tuesday and the courier will not answer"
    first = [augment(text, random.Random(3)) for _ in range(1)] + [augment(text, random.Random(4))]
    again = [augment(text, random.Random(3)) for _ in range(1)] + [augment(text, random.Random(4))]
    assert first == again
    assert all(a != text for a in first)
    assert json.dumps(augment("hi", random.Random(0))) == '"hi"'  # too short to change


def test_augmentation_with_a_vocabulary_draws_replacements_from_it():
    text = "my parcel has not moved since tuesday and the courier will not answer"
    vocabulary = ["refund", "password", "invoice"]
    edits = [augment(text, random.Random(seed), vocabulary) for seed in range(40)]
    replaced = [e for e in edits if set(e.split()) - set(text.split())]
    assert replaced, "no seed picked word replacement"
    assert all(set(e.split()) - set(text.split()) <= set(vocabulary) for e in replaced)


def test_a_mix_joins_or_splices_two_texts_reproducibly():
    first, second = "I was charged twice for one order", "the app crashes when I open settings"
    mixes = [mix(first, second, random.Random(seed)) for seed in range(20)]
    assert mixes == [mix(first, second, random.Random(seed)) for seed in range(20)]
    assert f"{first} {second}" in mixes
    spliced = [m for m in mixes if m != f"{first} {second}"]
    assert spliced
    for text in spliced:  # the head of the first, then the tail of the second
        words = text.split()
        assert words[0] == "I" and words[-1] == "settings" and len(words) < len(f"{first} {second}".split())


def test_the_corpus_grows_with_augment_and_mix_and_is_seeded(tmp_path, untrained, data):
    def corpus(seed, augment_copies, mixes):
        spec = compress_spec(
            tmp_path, untrained["bert"], data, distill={"augment": augment_copies, "mix": mixes, "seed": seed}
        )
        return build_corpus(spec, INTENTS)

    plain, grown = corpus(0, 0, 0), corpus(0, 3, 2)
    heldout = {json.loads(line)["text"] for line in (data / "heldout.jsonl").read_text().splitlines()}
    assert len(plain) == plain.labelled == 40 and plain.augmented == 0
    assert grown.labelled == 40 and 40 * 4 <= len(grown) <= 40 * 6 and grown.augmented == len(grown) - 40
    assert grown.gold[40:] == [-1] * grown.augmented  # augmented texts carry soft targets only
    assert len(set(grown.texts)) == len(grown) and not heldout & set(grown.texts)
    assert corpus(0, 3, 2).texts == grown.texts and corpus(1, 3, 2).texts != grown.texts
