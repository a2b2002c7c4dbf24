"""Shared fixtures: isolated settings, and real services started by the project's own code.

Every service runs on free ports with its data under a pytest temp dir, so the suite never
touches a broker or server a developer has running, and two suites can run side by side.
Session-scoped services are started once and always stopped, even when a test fails.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from volpipe.config import Settings
from volpipe.services.process import free_port


def isolated_settings(data_dir: Path, **env: str) -> Settings:
    """Settings whose every port is free and whose every path is under ``data_dir``."""
    base = {
        "PIPELINE_DATA_DIR": str(data_dir),
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
        "KAFKA_CONTROLLER_PORT": str(free_port()),
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
        "AIRFLOW_PORT": str(free_port()),
        "METRICS_PORT": "0",
        "SPARK_SHUFFLE_PARTITIONS": "2",
    }
    return Settings.from_env({**base, **env})


@pytest.fixture(scope="session")
def session_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings shared by the session-scoped services."""
    return isolated_settings(tmp_path_factory.mktemp("pipeline"))


@pytest.fixture(scope="session")
def kafka_broker(session_settings: Settings) -> Iterator[Settings]:
    """A real single-node KRaft broker with the pipeline's topics; yields its settings."""
    from volpipe.services import kafka

    kafka.start(session_settings)
    try:
        yield session_settings
    finally:
        kafka.stop(session_settings)


@pytest.fixture(scope="session")
def spark(session_settings: Settings, kafka_broker: Settings):
    """One local[2] SparkSession (UI off, UTC, Delta, RocksDB) for the whole test session.

    It asks for the broker so that the broker outlives it: Spark's Kafka producers would
    otherwise retry a stopped broker while the session shuts down.
    """
    from volpipe.spark import build_spark_session

    # py4j logs at INFO from an atexit hook, after pytest has closed the streams it captured.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    session = build_spark_session(session_settings, "volpipe-tests")
    try:
        yield session
    finally:
        session.stop()


@pytest.fixture(scope="session")
def mlflow_server(session_settings: Settings) -> Iterator[Settings]:
    """A real MLflow tracking server on a sqlite backend; yields its settings."""
    from volpipe.services import mlflow_server as server

    server.start(session_settings)
    try:
        yield session_settings
    finally:
        server.stop(session_settings)
