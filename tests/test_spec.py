"""The spec: the example validates, and bad specs fail with messages that name the bad field."""

from __future__ import annotations

from pathlib import Path

import pytest

from triton_bundle.spec import SpecError, load_spec

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL = "name: m\ntask: text-classification\nsource: {path: ckpt}\ndata: {eval: eval.jsonl}\n"


def test_example_spec_validates_and_resolves_paths_against_its_directory() -> None:
    spec = load_spec(ROOT / "examples" / "minilm-intent" / "spec.yaml")
    assert spec.name == "minilm-intent"
    assert spec.resolve(spec.data.eval) == (ROOT / "examples" / "minilm-intent" / "data" / "heldout.jsonl")
    assert spec.resolve(spec.data.eval).is_file()
    assert spec.repository.max_batch_size <= spec.shapes.batch.max


def test_unknown_field_is_named(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"repository\.max_batch: Extra inputs are not permitted"):
        load_spec(_write(tmp_path, MINIMAL + "repository: {max_batch: 8}\n"))


def test_wrong_type_names_field_and_value(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"loadtest\.users: .*got 'many'"):
        load_spec(_write(tmp_path, MINIMAL + "loadtest: {users: many}\n"))


def test_unordered_range_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"shapes\.sequence: .*min <= opt <= max, got 64, 8, 128"):
        load_spec(_write(tmp_path, MINIMAL + "shapes: {sequence: {min: 64, opt: 8, max: 128}}\n"))


def test_max_batch_beyond_profile_is_rejected(tmp_path: Path) -> None:
    text = MINIMAL + "shapes: {batch: {min: 1, opt: 4, max: 8}}\nrepository: {max_batch_size: 16}\n"
    with pytest.raises(SpecError, match=r"max_batch_size 16 exceeds shapes\.batch\.max 8"):
        load_spec(_write(tmp_path, text))


def test_model_source_is_required(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"give source\.path"):
        load_spec(_write(tmp_path, "name: m\ntask: text-classification\ndata: {eval: e.jsonl}\n"))


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "nope.yaml")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(_write(tmp_path, "name: [unclosed\n"))
