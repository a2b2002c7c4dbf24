"""Configuration: the first version's defaults, overrides, and clear errors for bad values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from volpipe.config import PROJECT_ROOT, Settings, env_names
from volpipe.errors import ConfigError


def test_defaults_match_the_first_versions_configuration_table():
    settings = Settings.from_env({})
    assert settings.kafka_bootstrap_servers == "localhost:9092"
    assert settings.kafka_input_topic == "ticks.raw"
    assert settings.kafka_output_topic == "ticks.features"
    assert settings.feature_window_size == 60
    assert settings.mlflow_tracking_uri == "http://localhost:5001"
    assert settings.mlflow_port == 5001
    assert settings.product_ids == ("BTC-USD",)
    assert settings.stale_feed_seconds == 20


def test_paths_derive_from_the_data_dir(tmp_path: Path):
    settings = Settings.from_env({"PIPELINE_DATA_DIR": str(tmp_path)})
    assert settings.raw_dir == tmp_path / "raw"
    assert settings.quarantine_dir == tmp_path / "quarantine"
    assert settings.delta_table("features") == tmp_path / "delta" / "features"
    assert settings.checkpoint("features") == tmp_path / "checkpoints" / "features"
    assert settings.mlflow_backend_store_uri == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"


def test_relative_paths_resolve_against_the_project_root():
    settings = Settings.from_env({"PIPELINE_DATA_DIR": "somewhere", "RAW_DIR": "elsewhere/raw"})
    assert settings.data_dir == PROJECT_ROOT / "somewhere"
    assert settings.raw_dir == PROJECT_ROOT / "elsewhere" / "raw"


def test_environment_values_are_parsed():
    settings = Settings.from_env(
        {"PRODUCT_IDS": " BTC-USD, ETH-USD ,", "FEATURE_WINDOW_SIZE": "30", "KAFKA_BOOTSTRAP_SERVERS": "a:1,b:2"}
    )
    assert settings.product_ids == ("BTC-USD", "ETH-USD")
    assert settings.feature_window_size == 30
    assert settings.kafka_listener == ("a", 1)


def test_overrides_win_over_the_environment():
    settings = Settings.from_env({"FEATURE_WINDOW_SIZE": "30"}, feature_window_size=90)
    assert settings.feature_window_size == 90


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("FEATURE_WINDOW_SIZE", "sixty", "FEATURE_WINDOW_SIZE='sixty' is invalid"),
        ("FEATURE_WINDOW_SIZE", "0", "must be a positive integer"),
        ("KAFKA_BOOTSTRAP_SERVERS", "localhost", "host:port"),
        ("KAFKA_BOOTSTRAP_SERVERS", "localhost:99999", "TCP port"),
        ("MLFLOW_TRACKING_URI", "localhost:5001", "MLFLOW_TRACKING_URI"),
        ("COINBASE_WS_URL", "https://example.com", "ws/wss URL"),
        ("STALE_FEED_SECONDS", "-1", "STALE_FEED_SECONDS"),
        ("PRODUCT_IDS", " , ", "PRODUCT_IDS"),
        ("PRODUCT_IDS", "BTC-USD,ETH-USD,BTC-USD", "products listed more than once: BTC-USD"),
        ("PRODUCT_IDS", "BTC-USD,ETH USD", "not product ids (letters or digits joined by dashes): ETH USD"),
        ("SPARK_MASTER", "local-ish", "SPARK_MASTER"),
        ("KAFKA_OUTPUT_TOPIC", "ticks.raw", "must differ"),
    ],
)
def test_a_bad_value_fails_naming_the_variable(name: str, value: str, message: str):
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        Settings.from_env({name: value})
    assert name in str(caught.value) or "must differ" in str(caught.value)


def test_unknown_override_is_rejected():
    with pytest.raises(ConfigError, match="unknown settings: window"):
        Settings.from_env({}, window=3)


def test_env_example_lists_every_variable_with_its_default():
    example = (PROJECT_ROOT / ".env.example").read_text()
    listed = {}
    for line in example.splitlines():
        line = line.strip().lstrip("# ")
        if "=" in line and line.split("=", 1)[0].isupper():
            key, value = line.split("=", 1)
            listed[key] = value
    assert list(listed.items()) == list(env_names().items())  # the order too: Settings' bases set it


def test_configuration_doc_names_every_variable():
    doc = (PROJECT_ROOT / "docs" / "configuration.md").read_text()
    missing = [name for name in env_names() if f"`{name}`" not in doc]
    assert not missing, f"docs/configuration.md does not document {missing}"


def test_kafka_clients_default_to_plaintext_with_the_brokers_only():
    settings = Settings.from_env({})
    assert settings.kafka_client_config() == {"bootstrap.servers": "localhost:9092", "security.protocol": "PLAINTEXT"}
    assert settings.spark_kafka_options() == {
        "kafka.bootstrap.servers": "localhost:9092",
        "kafka.security.protocol": "PLAINTEXT",
    }


def test_sasl_ssl_settings_reach_librdkafka_and_spark_from_one_place(tmp_path):
    password = tmp_path / "kafka.password"
    password.write_text('p"a\\ss\n')
    ca = tmp_path / "ca.pem"
    settings = Settings.from_env(
        {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": "volpipe",
            "KAFKA_SASL_PASSWORD_FILE": str(password),
            "KAFKA_SSL_CA_FILE": str(ca),
        }
    )
    assert settings.kafka_client_config() == {
        "bootstrap.servers": "localhost:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "volpipe",
        "sasl.password": 'p"a\\ss',
        "ssl.ca.location": str(ca),
    }
    spark = settings.spark_kafka_options()
    assert spark["kafka.security.protocol"] == "SASL_SSL" and spark["kafka.sasl.mechanism"] == "SCRAM-SHA-512"
    assert spark["kafka.sasl.jaas.config"] == (
        'org.apache.kafka.common.security.scram.ScramLoginModule required username="volpipe" password="p\\"a\\\\ss";'
    )
    assert spark["kafka.ssl.truststore.type"] == "PEM" and spark["kafka.ssl.truststore.location"] == str(ca)
    assert 'p"a' not in repr(settings)  # the password is read when a client is built, never held or shown


def test_sasl_without_credentials_or_with_an_unreadable_password_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD_FILE"):
        Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"})
    settings = Settings.from_env(
        {
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_USERNAME": "u",
            "KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "missing"),
        }
    )
    with pytest.raises(ConfigError, match=r"KAFKA_SASL_PASSWORD_FILE=.*cannot be read"):
        settings.kafka_client_config()


def test_a_products_flag_fails_with_the_parsers_reason(capsys):
    from ingest.ingestor import build_parser

    assert build_parser().parse_args(["--products", " BTC-USD,,ETH-USD "]).products == ("BTC-USD", "ETH-USD")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--products", "BTC-USD,BTC-USD"])
    assert "argument --products: products listed more than once: BTC-USD" in capsys.readouterr().err
