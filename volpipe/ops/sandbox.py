"""Isolated settings: every port free, every path under one folder.

Tests and benchmarks run the whole system side by side with a developer's services (and
with each other) this way: nothing they start listens on a default port or writes under
the project's ``data/``.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from volpipe.config import Settings
from volpipe.ops.services.process import free_port


def isolated_settings(data_dir: Path, **env: str) -> Settings:
    """Settings whose every port is free and whose every path is under ``data_dir``.

    Args:
        data_dir: Root of every folder the settings name.
        **env: Variables that win over the isolated defaults (e.g. ``PRODUCT_IDS``).
    """
    base = {
        "PIPELINE_DATA_DIR": str(data_dir),
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
        "AIRFLOW_PORT": str(free_port()),
        "METRICS_PORT": "0",
        "STREAM_METRICS_PORT": "0",
        "SPARK_SHUFFLE_PARTITIONS": "2",
    }
    return Settings.from_env({**base, **env})


@contextlib.contextmanager
def scratch_settings(prefix: str, **env: str) -> Iterator[Settings]:
    """``isolated_settings`` under a fresh temp folder, deleted afterwards (benchmarks)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield isolated_settings(root, **env)
    finally:
        shutil.rmtree(root, ignore_errors=True)
