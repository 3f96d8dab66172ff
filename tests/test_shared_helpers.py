"""Helpers every stage shares: the console-script entry point, ports and addresses, log tails, units."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from triton_bundle.entry import run_entry
from triton_bundle.errors import BundleError
from triton_bundle.formatting import ms, number, percent
from triton_bundle.net import bind_error, client_host, free_port, port_or_free
from triton_bundle.processes import log_tail


def _raise(exc: BaseException):
    def command():
        raise exc

    return command


def test_a_bundle_error_is_one_red_line_and_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_entry(_raise(BundleError("shape [batch, 16] expected")))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: shape [batch, 16] expected"  # brackets kept: not read as markup


def test_a_bug_is_one_line_exit_1_and_an_argparse_main_keeps_its_code(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_entry(_raise(KeyError("boom")))
    assert exit_info.value.code == 1 and "unexpected KeyError" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        run_entry(lambda: 3)
    assert exit_info.value.code == 3
    run_entry(lambda: None)  # a typer app that returns normally: no exit


def test_the_engine_module_entry_point_reports_like_the_cli(tmp_path: Path):
    missing = tmp_path / "nope.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "triton_bundle.engine", "build", str(missing)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "nope.yaml" in lines[0]


def test_ports_free_and_taken():
    port = free_port()
    assert bind_error("127.0.0.1", port) is None and port_or_free("127.0.0.1", port) == port
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        assert isinstance(bind_error("127.0.0.1", taken), OSError)
        assert port_or_free("127.0.0.1", taken) == 0


@pytest.mark.parametrize(
    ("bound", "dialled"), [("0.0.0.0", "127.0.0.1"), ("::", "127.0.0.1"), ("10.1.2.3", "10.1.2.3")]
)
def test_a_wildcard_bind_is_dialled_on_loopback(bound, dialled):
    assert client_host(bound) == dialled


def test_log_tail_keeps_the_last_lines(tmp_path: Path):
    log = tmp_path / "server.log"
    log.write_text("".join(f"line {i}\n" for i in range(30)))
    assert log_tail(log, 2) == "line 28\nline 29"
    assert log_tail(tmp_path / "none.log", 5) == "(no log)"


def test_units_read_the_same_everywhere():
    assert (ms(12.345), ms(12.345, 0), ms(None)) == ("12.3 ms", "12 ms", "n/a")
    assert (number(2.25), percent(0.421), percent(None)) == ("2.2", "42%", "n/a")
