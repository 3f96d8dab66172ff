"""Hugging Face settings for offline, quiet use: no hub calls, no progress bars per weight shard."""

from __future__ import annotations

import os


def quiet_offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
