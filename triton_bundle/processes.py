"""Stopping the servers and load generators the bundle starts: politely first, then the whole group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path


def stop_process_group(
    process: subprocess.Popen,
    *,
    first_signal: int = signal.SIGTERM,
    grace_s: float,
    whole_group: bool = False,
    kill_wait_s: float = 5.0,
) -> None:
    """Send `first_signal` (to the leader, or its whole group), wait up to `grace_s`, then SIGKILL the
    group so children left behind by a crash or a hung exit die too. The child must lead its own
    process group (started with start_new_session=True)."""
    if whole_group or process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if whole_group:
                os.killpg(process.pid, first_signal)
            else:
                process.send_signal(first_signal)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=kill_wait_s)


def last_lines(text: str, lines: int) -> str:
    """The last `lines` lines of a process's output: the end of a log usually says why it failed."""
    return "\n".join(text.splitlines()[-lines:])


def log_tail(path: Path, lines: int, missing: str = "(no log)") -> str:
    """The last `lines` lines of a log file, or `missing` when the process wrote none."""
    if not Path(path).is_file():
        return missing
    return last_lines(Path(path).read_text(encoding="utf-8", errors="replace"), lines)
