"""Logging set-up for entrypoints (libraries only call ``logging.getLogger(__name__)``)."""

from __future__ import annotations

import logging
import time


def configure_logging(level: str | None = None) -> None:
    """UTC timestamps, one line per event, level from the argument or the LOG_LEVEL setting.

    Raises:
        ConfigError: LOG_LEVEL is not a level name.
    """
    from volpipe.config import setting_from_env

    formatter = logging.Formatter("%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel((level or setting_from_env("log_level")).upper())
