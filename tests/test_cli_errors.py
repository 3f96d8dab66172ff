"""Plausible mistakes with every `triton-bundle` command end in one clear line on stderr and a non-zero
exit, never a traceback (issue 13 item 4). Run through the console script's entry point in-process;
the cases that need a server are in test_client_cli_tasks.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from triton_bundle.net import free_port

SPEC_COMMANDS = [
    ["export"],
    ["precision"],
    ["build", "--aot-check"],
    ["repo", "generate"],
    ["serve"],
    ["loadtest"],
    ["capacity"],
    ["loadtest-compare"],
    ["finetune"],
    ["demo"],
]


def _cli(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    from triton_bundle.cli import main

    monkeypatch.setattr(sys, "argv", ["triton-bundle", *args])
    with pytest.raises(SystemExit) as done:
        main()
    out, err = capsys.readouterr()
    return done.value.code or 0, out, err


def _error_line(code: int, err: str, expected_code: int = 2) -> str:
    assert code == expected_code, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _spec_files(tmp_path: Path) -> dict[str, Path]:
    binary = tmp_path / "spec.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 8)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\ntask: tensor\n", encoding="utf-8")
    directory = tmp_path / "specs"
    directory.mkdir()
    return {"binary": binary, "broken": broken, "directory": directory, "missing": tmp_path / "nope.yaml"}


EXPECTED = {
    "missing": "spec file not found",
    "binary": "not a text file (not UTF-8); expected a spec in YAML",
    "broken": "not valid YAML: expected ',' or ']'",
    "directory": "is a directory; expected a spec file (YAML)",
}


@pytest.mark.parametrize("command", SPEC_COMMANDS, ids=lambda c: " ".join(c))
@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_every_spec_command_names_a_bad_spec_in_one_line(
    command, kind, tmp_path, monkeypatch, capsys
) -> None:
    spec = _spec_files(tmp_path)[kind]
    code, _, err = _cli([command[0], *command[1:2], str(spec), *command[2:]], monkeypatch, capsys)
    line = _error_line(code, err)
    assert EXPECTED[kind] in line and str(spec) in line, line


def test_a_spec_with_a_wrong_field_lists_each_problem(tmp_path, monkeypatch, capsys) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\ntask: text-classification\ndata: {eval: a.jsonl}\nrepository: {max_batch: 8}\n")
    code, _, err = _cli(["export", str(spec)], monkeypatch, capsys)
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: ") and "repository.max_batch: Extra inputs are not permitted" in err


def test_infer_and_stats_mistakes_are_one_line(tmp_path, monkeypatch, capsys) -> None:
    port = free_port()
    cases = {
        ("infer", "hello"): "no model given: pass --model NAME or --spec SPEC.yaml",
        ("infer", "-f", str(tmp_path / "nope.jsonl"), "-m", "m"): "input file not found",
        ("infer", "hi", "-m", "m", "-u", "ftp://127.0.0.1:1"): "unsupported URL scheme 'ftp'",
        ("infer", "hi", "-m", "m", "-u", f"127.0.0.1:{port}", "--retries", "1"): "Connection refused",
        (
            "infer",
            "hi",
            "-m",
            "m",
            "-u",
            f"grpc://127.0.0.1:{port}",
            "--retries",
            "1",
        ): "failed after 1 attempt",
        ("stats", "-u", f"127.0.0.1:{port}", "--retries", "1"): "Connection refused",
        ("preflight", "--repository", str(tmp_path / "no-repo")): "does not exist or is not a directory",
    }
    for args, expected in cases.items():
        code, out, err = _cli(list(args), monkeypatch, capsys)
        assert expected in _error_line(code, err), (args, err)
        assert out == ""


def test_an_unexpected_failure_is_one_line_unless_the_traceback_is_asked_for(monkeypatch, capsys) -> None:
    import triton_bundle.client.cli as client_cli

    def broken(model, spec_path):
        raise RuntimeError("boom [batch, 16]")

    monkeypatch.setattr(client_cli, "_model_name", broken)
    code, _, err = _cli(["infer", "hi"], monkeypatch, capsys)
    line = _error_line(code, err, expected_code=1)
    assert "unexpected RuntimeError: boom [batch, 16]" in line and "TRITON_BUNDLE_TRACEBACK=1" in line
    monkeypatch.setenv("TRITON_BUNDLE_TRACEBACK", "1")
    from triton_bundle.cli import main

    monkeypatch.setattr(sys, "argv", ["triton-bundle", "infer", "hi"])
    with pytest.raises(RuntimeError, match="boom"):
        main()


def test_data_files_that_are_not_text_are_named(tmp_path) -> None:
    from triton_bundle.data import DataError, load_texts

    data = tmp_path / "eval.jsonl"
    data.write_bytes(b'{"text": "ok"}\n\xff\xfe\x00binary\n')
    with pytest.raises(DataError, match=r"eval.jsonl: not UTF-8 text"):
        load_texts(data)
