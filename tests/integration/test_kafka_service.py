"""The embedded broker: started by the project's command, usable, restartable with its data."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from volpipe.config import PROJECT_ROOT
from volpipe.ops.sandbox import isolated_settings
from volpipe.ops.services import KAFKA
from volpipe.ops.services.process import port_open

pytestmark = pytest.mark.integration


def _produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    for key, value in messages:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(30) == 0


def _consume_all(bootstrap: str, topic: str, expected: int) -> list[tuple[bytes, bytes]]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    received: list[tuple[bytes, bytes]] = []
    try:
        for _ in range(60):
            for message in consumer.consume(num_messages=1000, timeout=1.0):
                assert message.error() is None, message.error()
                received.append((message.key(), message.value()))
            if len(received) >= expected:
                break
    finally:
        consumer.close()
    return received


def _cli(settings_env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "volpipe.ops.services", *args],
        env={**__import__("os").environ, **settings_env},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_broker_round_trip_and_restart_keeps_data(tmp_path: Path):
    settings = isolated_settings(tmp_path)
    env = {
        "PIPELINE_DATA_DIR": str(tmp_path),
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "KAFKA_CONTROLLER_PORT": str(settings.kafka_controller_port),
    }
    host, port = settings.kafka_listener
    started = _cli(env, "up", "kafka")
    try:
        assert started.returncode == 0, started.stderr
        assert "kafka    healthy" in started.stdout
        # A second `up` is a no-op against the running broker.
        again = _cli(env, "up", "kafka")
        assert again.returncode == 0 and "already running" in again.stderr

        topics = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers}).list_topics(timeout=10).topics
        for name in (settings.kafka_input_topic, settings.kafka_output_topic, settings.kafka_deadletter_topic):
            assert len(topics[name].partitions) == settings.kafka_topic_partitions

        sent = [(f"BTC-USD-{i % 3}".encode(), f"message-{i}".encode()) for i in range(500)]
        _produce(settings.kafka_bootstrap_servers, settings.kafka_input_topic, sent)
        assert sorted(_consume_all(settings.kafka_bootstrap_servers, settings.kafka_input_topic, 500)) == sorted(sent)

        stopped = _cli(env, "down", "kafka")
        assert stopped.returncode == 0 and "kafka    stopped" in stopped.stdout
        assert not port_open(host, port)
        assert _cli(env, "status", "kafka").returncode == 1

        assert _cli(env, "up", "kafka").returncode == 0
        after_restart = _consume_all(settings.kafka_bootstrap_servers, settings.kafka_input_topic, 500)
        assert sorted(after_restart) == sorted(sent)
        assert (tmp_path / "kafka" / "data" / "meta.properties").exists()
        assert (tmp_path / "kafka" / "logs" / "server.log").stat().st_size > 0
    finally:
        KAFKA.stop(settings)
    assert not port_open(host, port)
