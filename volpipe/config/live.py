"""The settings of the live path: storage, logging, Kafka, the ingestor and the stream.

Declarations only (variable, default, parser, help text, group); ``Settings`` adds them to
its fields, first, and derives the folders left empty.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from volpipe.config.parsers import (
    _bool,
    _choice,
    _host,
    _host_ports,
    _log_level,
    _name,
    _non_negative_float,
    _optional_path,
    _path,
    _port,
    _positive_float,
    _positive_int,
    _spark_master,
    _url,
    parse_products,
    setting,
)


@dataclasses.dataclass(frozen=True)
class LiveSettings:
    """The fields of ``Settings`` that the ingestor and the stream read."""

    # Storage layout. Relative paths are resolved against the project root; an empty folder is derived from
    # PIPELINE_DATA_DIR at construction (Settings.__post_init__), so these paths are never None.
    data_dir: Path = setting("PIPELINE_DATA_DIR", "data", _path, "Root of all runtime data.", group="storage")
    raw_dir: Path = setting(
        "RAW_DIR",
        "",
        _optional_path,
        "Daily NDJSON of raw exchange messages (default DATA_DIR/raw).",
        group="storage",
    )
    quarantine_dir: Path = setting(
        "QUARANTINE_DIR",
        "",
        _optional_path,
        "Rejected messages with reasons (default DATA_DIR/quarantine).",
        group="storage",
    )
    delta_dir: Path = setting(
        "DELTA_DIR",
        "",
        _optional_path,
        "Root of the Delta tables (default DATA_DIR/delta).",
        group="storage",
    )
    checkpoint_dir: Path = setting(
        "CHECKPOINT_DIR",
        "",
        _optional_path,
        "Structured Streaming checkpoints (default DATA_DIR/checkpoints).",
        group="storage",
    )

    # Logging.
    log_level: str = setting(
        "LOG_LEVEL", "INFO", _log_level, "Log level of every command: DEBUG, INFO, WARNING or ERROR.", group="logging"
    )

    # Kafka.
    kafka_bootstrap_servers: str = setting(
        "KAFKA_BOOTSTRAP_SERVERS",
        "localhost:9092",
        _host_ports,
        "Kafka brokers, host:port[,host:port].",
        group="kafka",
    )
    kafka_input_topic: str = setting("KAFKA_INPUT_TOPIC", "ticks.raw", _name, "Raw exchange messages.", group="kafka")
    kafka_output_topic: str = setting(
        "KAFKA_OUTPUT_TOPIC", "ticks.features", _name, "Feature rows as JSON.", group="kafka"
    )
    kafka_predictions_topic: str = setting(
        "KAFKA_PREDICTIONS_TOPIC",
        "ticks.predictions",
        _name,
        "Live predictions of the stream as JSON.",
        group="kafka",
    )
    kafka_deadletter_topic: str = setting(
        "KAFKA_DEADLETTER_TOPIC",
        "ticks.deadletter",
        _name,
        "Rejected messages with their reason.",
        group="kafka",
    )
    kafka_topic_partitions: int = setting(
        "KAFKA_TOPIC_PARTITIONS",
        "2",
        _positive_int,
        "Partitions of the topics the project creates.",
        group="kafka",
    )
    kafka_controller_port: int = setting(
        "KAFKA_CONTROLLER_PORT",
        "9093",
        _port,
        "KRaft controller port of the embedded broker.",
        group="kafka",
    )
    kafka_security_protocol: str = setting(
        "KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT",
        _choice("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
        "How every Kafka client talks to the brokers: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
        group="kafka",
    )
    kafka_sasl_mechanism: str = setting(
        "KAFKA_SASL_MECHANISM",
        "PLAIN",
        _choice("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"),
        "SASL mechanism (with SASL_*): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.",
        group="kafka",
    )
    kafka_sasl_username: str = setting(
        "KAFKA_SASL_USERNAME", "", str, "SASL user name (required with SASL_*).", group="kafka"
    )
    kafka_sasl_password_file: Path | None = setting(
        "KAFKA_SASL_PASSWORD_FILE",
        "",
        _optional_path,
        "File holding the SASL password (required with SASL_*); outside git, mode 0600.",
        group="kafka",
    )
    kafka_ssl_ca_file: Path | None = setting(
        "KAFKA_SSL_CA_FILE",
        "",
        _optional_path,
        "PEM file of the CA that signed the brokers' certificates (with SSL/SASL_SSL; default: the system's).",
        group="kafka",
    )

    # Exchange and ingestor.
    coinbase_ws_url: str = setting(
        "COINBASE_WS_URL",
        "wss://advanced-trade-ws.coinbase.com",
        _url("ws", "wss"),
        "Market-data WebSocket.",
        group="ingest",
    )
    product_ids: tuple[str, ...] = setting(
        "PRODUCT_IDS",
        "BTC-USD",
        parse_products,
        "Products to subscribe to, comma-separated ids such as BTC-USD, each once.",
        group="ingest",
    )
    stale_feed_seconds: float = setting(
        "STALE_FEED_SECONDS",
        "20",
        _positive_float,
        "Silence (heartbeats included) that means a dead feed.",
        group="ingest",
    )
    reconnect_initial_seconds: float = setting(
        "RECONNECT_INITIAL_SECONDS",
        "0.5",
        _positive_float,
        "First reconnect backoff.",
        group="ingest",
    )
    reconnect_max_seconds: float = setting(
        "RECONNECT_MAX_SECONDS",
        "30",
        _positive_float,
        "Backoff cap.",
        group="ingest",
    )
    reconnect_max_attempts: int = setting(
        "RECONNECT_MAX_ATTEMPTS",
        "0",
        int,
        "Consecutive failed attempts before giving up; 0 = never.",
        group="ingest",
    )
    producer_buffer_messages: int = setting(
        "PRODUCER_BUFFER_MESSAGES",
        "1000000",
        _positive_int,
        "Messages the Kafka producer holds while the broker is down.",
        group="ingest",
    )
    producer_message_timeout_seconds: float = setting(
        "PRODUCER_MESSAGE_TIMEOUT_SECONDS",
        "600",
        _positive_float,
        "How long the producer retries a message (broker down) before counting it failed.",
        group="ingest",
    )
    shutdown_flush_seconds: float = setting(
        "SHUTDOWN_FLUSH_SECONDS",
        "10",
        _non_negative_float,
        "How long SIGTERM waits for Kafka deliveries.",
        group="ingest",
    )
    ws_max_message_bytes: int = setting(
        "WS_MAX_MESSAGE_BYTES",
        "1048576",
        _positive_int,
        "Largest WebSocket message the ingestor accepts; a bigger one drops the connection (counted as oversized).",
        group="ingest",
    )
    metrics_port: int = setting("METRICS_PORT", "9108", int, "Ingestor Prometheus port; 0 = off.", group="ingest")
    metrics_host: str = setting(
        "METRICS_HOST", "127.0.0.1", _host, "Address the ingestor's Prometheus endpoint binds to.", group="ingest"
    )
    metrics_log_seconds: float = setting(
        "METRICS_LOG_SECONDS",
        "30",
        _positive_float,
        "Interval of the one-line metrics summary.",
        group="ingest",
    )

    # Features and the streaming job.
    feature_window_size: int = setting(
        "FEATURE_WINDOW_SIZE",
        "60",
        _positive_int,
        "W: returns in the rolling window (ticks).",
        group="stream",
    )
    spark_master: str = setting("SPARK_MASTER", "local[2]", _spark_master, "Spark master URL.", group="stream")
    spark_shuffle_partitions: int = setting(
        "SPARK_SHUFFLE_PARTITIONS",
        "2",
        _positive_int,
        "Shuffle partitions; frozen into a stateful query's checkpoint.",
        group="stream",
    )
    spark_driver_memory: str = setting(
        "SPARK_DRIVER_MEMORY", "2g", _name, "Driver heap (local mode runs here).", group="stream"
    )
    spark_jars_dir: Path = setting(
        "SPARK_JARS_DIR", ".jars/spark", _path, "Jars fetched by `make setup`.", group="stream"
    )
    stream_trigger_seconds: float = setting(
        "STREAM_TRIGGER_SECONDS",
        "0",
        _non_negative_float,
        "Micro-batch interval; 0 = as fast as possible.",
        group="stream",
    )
    stream_max_offsets_per_trigger: int = setting(
        "STREAM_MAX_OFFSETS_PER_TRIGGER",
        "500000",
        _positive_int,
        "Kafka records per micro-batch at most.",
        group="stream",
    )
    stream_scoring: bool = setting(
        "STREAM_SCORING",
        "true",
        _bool,
        "Score feature rows in the stream with the registered champion.",
        group="stream",
    )
    model_refresh_seconds: float = setting(
        "MODEL_REFRESH_SECONDS",
        "30",
        _positive_float,
        "How often the stream asks the registry where the champion alias points.",
        group="stream",
    )
    stream_metrics_port: int = setting(
        "STREAM_METRICS_PORT", "9109", int, "Stream driver Prometheus port (127.0.0.1); 0 = off.", group="stream"
    )
    stream_stop_timeout_seconds: float = setting(
        "STREAM_STOP_TIMEOUT_SECONDS",
        "120",
        _non_negative_float,
        "How long SIGTERM/Ctrl-C waits for the micro-batch in flight to commit before interrupting it.",
        group="stream",
    )
    stream_delta_checkpoint_commits: int = setting(
        "STREAM_DELTA_CHECKPOINT_COMMITS",
        "100",
        _positive_int,
        "Stream commits to a Delta table between the log checkpoints it writes in the background.",
        group="stream",
    )
