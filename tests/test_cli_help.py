"""Every command's --help reads whole on an 80-column terminal: no option name or default is cut."""

from __future__ import annotations

import re

import pytest
import typer

from triton_bundle.cli import app

WIDTH = 80


# Duck-typed: recent typer vendors its own copy of click, so click's classes are not its classes.
def _walk(command, path: tuple[str, ...] = ()):
    yield path, command
    if getattr(command, "commands", None):
        for name, sub in sorted(command.commands.items()):
            yield from _walk(sub, (*path, name))


COMMANDS = list(_walk(typer.main.get_command(app)))


def _help(path: tuple[str, ...], capsys, monkeypatch, columns: int = WIDTH) -> str:
    """The help as a terminal of `columns` gets it, in process (CliRunner would force a width of 80)."""
    monkeypatch.setenv("COLUMNS", str(columns))
    code = typer.main.get_command(app).main(
        [*path, "--help"], prog_name="triton-bundle", standalone_mode=False
    )
    assert code in (0, None)
    return capsys.readouterr().out


def _shown_default(param) -> str | None:
    """The default text click prints for this option, or None when it prints none."""
    if not param.show_default or param.default is None or (param.is_flag and not param.default):
        return None
    if isinstance(param.show_default, str):
        return param.show_default
    default = param.default
    if isinstance(default, list | tuple):
        return None if not default else ", ".join(map(str, default))
    if param.is_bool_flag and param.secondary_opts:
        return (param.opts if default else param.secondary_opts)[0].lstrip("-")
    return str(default.value if hasattr(default, "value") else default)


def test_the_walk_finds_every_command():
    names = {" ".join(path) for path, _ in COMMANDS}
    # The stages the README documents, nested groups included: a walk that missed them proves nothing.
    assert {"export", "loadtest", "repo generate", "repo validate", "init", "doctor"} <= names


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "(root)" for p, _ in COMMANDS])
def test_help_fits_80_columns_without_cutting_names(path, command, capsys, monkeypatch):
    text = _help(path, capsys, monkeypatch)
    assert "…" not in text, text
    too_wide = [line for line in text.splitlines() if len(line) > WIDTH]
    assert not too_wide, too_wide
    flat = re.sub(r"\s+", " ", text)
    for param in command.params:
        if param.param_type_name != "option" or param.hidden:
            continue
        for name in [*param.opts, *param.secondary_opts]:
            # Whole: not followed by more of a name (a cut) and not split over two lines.
            assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), f"{name} missing in {path}"
        default = _shown_default(param)
        if default is not None:
            assert f"default: {default}" in flat, f"default of {param.opts[0]} not readable in {path}"


def test_command_summaries_wrap_instead_of_being_cut(capsys, monkeypatch):
    text = _help((), capsys, monkeypatch)
    commands = text.split("Commands:")[1]
    assert "..." not in commands
    assert "exit 1 on a miss" in re.sub(r"\s+", " ", commands)  # the end of loadtest's long summary


def test_wide_terminals_use_their_width(capsys, monkeypatch):
    """The 80-column layout is not a fixed cap: a wider terminal gets longer help lines."""
    narrow = max(len(line) for line in _help(("repo", "generate"), capsys, monkeypatch).splitlines())
    wide = _help(("repo", "generate"), capsys, monkeypatch, columns=120)
    wide = max(len(line) for line in wide.splitlines())
    assert narrow <= WIDTH < wide
