"""Service helpers that need no running service, and the stop of a small stand-in process tree."""

from __future__ import annotations

import base64
import sys

import pytest

from volpipe.errors import SetupError
from volpipe.ops.harness import survivors, wait_until
from volpipe.ops.sandbox import isolated_settings
from volpipe.ops.services.kafka import _cluster_id, server_properties
from volpipe.ops.services.process import ManagedProcess, process_tree


def test_cluster_ids_are_kafka_uuids_that_never_look_like_options():
    for _ in range(2000):
        cluster_id = _cluster_id()
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_server_properties_follow_the_settings(tmp_path):
    settings = isolated_settings(tmp_path, KAFKA_TOPIC_PARTITIONS="3")
    host, port = settings.kafka_listener
    properties = dict(line.split("=", 1) for line in server_properties(settings).splitlines() if line)
    assert properties["listeners"] == f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{settings.kafka_controller_port}"
    assert properties["log.dirs"] == str(tmp_path / "kafka" / "data")
    assert properties["num.partitions"] == "3"
    assert properties["auto.create.topics.enable"] == "false"
    # The largest record the ingestor writes: a dead letter of a maximal frame, escaped as JSON.
    assert int(properties["message.max.bytes"]) == settings.kafka_max_message_bytes >= 6 * settings.ws_max_message_bytes


def test_with_sasl_the_embedded_broker_knows_the_clients_user_and_refuses_what_it_cannot_offer(tmp_path):
    password = tmp_path / "kafka.password"
    password.write_text('s3\\cr"t')
    sasl = {
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_USERNAME": "volpipe",
        "KAFKA_SASL_PASSWORD_FILE": str(password),
    }
    settings = isolated_settings(tmp_path, **sasl)
    properties = dict(line.split("=", 1) for line in server_properties(settings).splitlines() if line)
    host, port = settings.kafka_listener
    assert properties["listeners"].startswith(f"SASL_PLAINTEXT://{host}:{port},")
    assert properties["inter.broker.listener.name"] == "SASL_PLAINTEXT"
    assert properties["sasl.enabled.mechanisms"] == "PLAIN"
    # JAAS-quoted, then escaped for the .properties file (Kafka reads back s3\cr"t).
    assert 'user_volpipe="s3\\\\\\\\cr\\\\"t";' in properties["listener.name.sasl_plaintext.plain.sasl.jaas.config"]
    with pytest.raises(SetupError, match="offers PLAINTEXT or SASL_PLAINTEXT with PLAIN"):
        server_properties(isolated_settings(tmp_path, **{**sasl, "KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}))


def test_stop_ends_a_child_that_left_the_process_group(tmp_path):
    """Airflow runs each task in a process group of its own: the group signal misses it, the tree does not."""
    child = "import subprocess, time; subprocess.Popen(['sleep', '300'], start_new_session=True); time.sleep(300)"
    service = ManagedProcess(
        name="t", argv=[sys.executable, "-c", child], run_dir=tmp_path, ready=lambda: True, stop_timeout=5
    )
    service.start()
    try:
        wait_until(lambda: len(process_tree(service.pid())) == 2, 10, "the child")
        tree = process_tree(service.pid())
    finally:
        assert service.stop()
    assert survivors(tree) == []
