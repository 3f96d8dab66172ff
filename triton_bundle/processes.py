"""Stopping the servers and load generators the bundle starts: politely first, then the whole group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess


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
