"""The ingestor and the feature stream against a broker that wants SASL/PLAIN, set by configuration only.

The embedded broker is started with KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT: its client
listener knows one user, the clients'. Clients without (or with wrong) credentials get
nothing; the ingestor, the stream's Kafka source and its feature publisher, configured by
the same settings, move every tick.
"""

from __future__ import annotations

import secrets

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from spark_jobs import features_stream
from volpipe.ops.harness import (
    ExchangeProcess,
    IngestorProcess,
    ingestor_env,
    ndjson_records,
    topic_records,
    wait_until,
)
from volpipe.ops.sandbox import isolated_settings
from volpipe.ops.services import KAFKA, running
from volpipe.ops.services.process import private_file

pytestmark = [pytest.mark.integration, pytest.mark.spark]


def test_ingestor_and_stream_work_through_sasl_plain_and_anonymous_clients_are_refused(spark, tmp_path):
    password = private_file(tmp_path / "kafka.password")
    password.write_text(secrets.token_urlsafe(18))
    sasl = {
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "PLAIN",
        "KAFKA_SASL_USERNAME": "volpipe",
        "KAFKA_SASL_PASSWORD_FILE": str(password),
    }
    settings = isolated_settings(tmp_path / "data", FEATURE_WINDOW_SIZE="5", **sasl)
    n = 400
    with running(settings, KAFKA):
        for config in (
            {"bootstrap.servers": settings.kafka_bootstrap_servers},
            {**settings.kafka_client_config(), "sasl.password": "wrong"},
        ):
            with pytest.raises(KafkaException):
                AdminClient(config).list_topics(timeout=5)

        exchange = ExchangeProcess("--speed", "0", "--max-ticks", str(n), "--products", "BTC-USD")
        ingestor = IngestorProcess(ingestor_env(settings, exchange.url, **sasl), tmp_path / "ingest.log")
        try:
            wait_until(
                lambda: exchange.stats()["exhausted"] and len(ndjson_records(settings.raw_dir)) >= n, 120, "n ticks"
            )
            final = ingestor.stop()
        finally:
            exchange.stop()
        assert final["tickers"] == final["delivered"] == n and final["failed"] == 0
        assert len(topic_records(settings, settings.kafka_input_topic, n)) == n

        query = features_stream.start(spark, settings)
        try:
            query.processAllAvailable()
            assert query.exception() is None
        finally:
            query.stop()
        features = spark.read.format("delta").load(str(settings.delta_table("features"))).count()
        assert features > 0
        assert len(topic_records(settings, settings.kafka_output_topic, features)) == features
