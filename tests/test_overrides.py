"""Command-line overrides of spec sections and shared option groups: the one way every command uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from triton_bundle.cli_common import option_groups
from triton_bundle.errors import BundleError
from triton_bundle.overrides import InvalidOverrideError, with_overrides, with_section_overrides
from triton_bundle.spec import LoadtestSpec, SLOSpec, load_spec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_given_values_replace_fields_and_none_keeps_the_spec():
    slo = SLOSpec(p95_ms=50, max_error_rate=0.01)
    out = with_overrides(slo, p95_ms=20.0, p99_ms=None, max_error_rate=None)
    assert (out.p95_ms, out.p99_ms, out.max_error_rate) == (20.0, None, 0.01)
    assert slo.p95_ms == 50  # the spec's own section is left as loaded


def test_an_override_obeys_the_bounds_of_the_yaml_it_replaces():
    with pytest.raises(InvalidOverrideError, match=r"max_error_rate: .*less than or equal to 1"):
        with_overrides(SLOSpec(), max_error_rate=1.5)
    with pytest.raises(InvalidOverrideError, match="duration_s"):
        with_overrides(LoadtestSpec(), duration_s=7200)
    assert issubclass(InvalidOverrideError, BundleError)  # the CLI prints it as one line, exit 2


def test_an_unknown_field_is_named():
    with pytest.raises(InvalidOverrideError, match="LoadtestSpec has no field"):
        with_overrides(LoadtestSpec(), userz=3)


@pytest.mark.parametrize("example", ["minilm-intent", "support-gpt"])  # a classifier and a decoder
def test_section_overrides_copy_the_spec(example):
    spec = load_spec(EXAMPLES / example / "spec.yaml")
    users = spec.loadtest.users
    copy = with_section_overrides(spec, "loadtest", users=users + 3, protocol=None)
    assert copy.loadtest.users == users + 3 and spec.loadtest.users == users
    assert copy.loadtest.protocol == spec.loadtest.protocol
    assert copy.base_dir == spec.base_dir and copy.task == spec.task
    assert with_section_overrides(spec, "loadtest", users=None) is spec


@dataclass(frozen=True)
class _Target:
    url: Annotated[str | None, typer.Option("--url", help="host:port")] = None
    retries: Annotated[int, typer.Option(min=0, help="tries")] = 2


def test_an_option_group_is_declared_once_and_arrives_as_one_object():
    seen = []

    @option_groups
    def command(name: Annotated[str, typer.Argument()], target: _Target = _Target(), loud: bool = False):
        """Say who is called."""
        seen.append((name, target, loud))

    app = typer.Typer()
    app.command()(command)
    app.command("other")(command)  # a second command: an app with one command has no sub-commands
    runner = CliRunner()
    result = runner.invoke(app, ["command", "x", "--url", "h:1", "--retries", "0", "--loud"])
    assert result.exit_code == 0, result.output
    assert seen == [("x", _Target(url="h:1", retries=0), True)]
    assert runner.invoke(app, ["command", "x", "--retries", "-1"]).exit_code == 2  # the group's bounds hold
    help_text = runner.invoke(app, ["command", "--help"]).output
    assert "--url" in help_text and "--retries" in help_text and "Say who is called." in help_text


@pytest.mark.parametrize("example", ["minilm-intent", "support-gpt"])
def test_load_test_overrides_go_through_the_spec_section(example, tmp_path):
    from triton_bundle.loadtest.settings import LoadtestUsageError
    from triton_bundle.loadtest.stage import Overrides, build_settings

    spec = load_spec(EXAMPLES / example / "spec.yaml")
    settings = build_settings(spec, Overrides(users=5, protocol="grpc", workers=2), tmp_path)
    assert (settings.shape.users, settings.endpoint.protocol, settings.workers) == (5, "grpc", 2)
    assert settings.max_requests == spec.loadtest.max_requests  # not given: the spec's
    with pytest.raises(LoadtestUsageError, match="duration_s"):
        build_settings(spec, Overrides(duration_s=7200), tmp_path)
