"""Every setting of the pipeline, read once from environment variables.

Inputs: the process environment (names and defaults in ``SETTINGS`` below, documented in
``docs/configuration.md`` and listed in ``.env.example``). Output: a frozen ``Settings``.

Only entrypoints call ``Settings.from_env()``; everything else receives the object. Nothing
happens at import time. A missing or malformed value raises ``ConfigError`` naming the
variable, so a bad deployment fails at start, not an hour into a run.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from volpipe.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The label modes (volpipe.modeling.label defines them; here so that parsing LABEL_MODE imports nothing).
LABEL_MODES = ("relative", "trailing", "forward", "current")


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 < value < 65536:
        raise ValueError("must be a TCP port (1-65535)")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be a positive number")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if not value >= 0:
        raise ValueError("must be zero or a positive number")
    return value


def _host(raw: str) -> str:
    if not raw or any(ch.isspace() or ch in "/:" for ch in raw):
        raise ValueError("must be a host name or IPv4 address, e.g. 127.0.0.1")
    return raw


class ListValueError(ValueError, argparse.ArgumentTypeError):
    """Raised when a comma-separated list is malformed: a ``ValueError`` to a setting (which names
    the variable) and an ``ArgumentTypeError`` to argparse, the one kind whose text argparse prints."""


def comma_list(raw: str) -> tuple[str, ...]:
    """The items of ``raw``, comma-separated, stripped, empty ones dropped; at least one."""
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    if not items:
        raise ListValueError("must list at least one comma-separated value")
    return items


def parse_products(raw: str) -> tuple[str, ...]:
    """Product ids from a comma-separated list: ``PRODUCT_IDS``, every ``--products`` flag, run params.

    Raises:
        ListValueError: No id, an id that is not letters or digits joined by dashes (``BTC-USD``), or an id twice.
    """
    products = comma_list(raw)
    malformed = [product for product in products if not re.fullmatch(r"[A-Za-z0-9]+(-[A-Za-z0-9]+)*", product)]
    if malformed:
        raise ListValueError(f"not product ids (letters or digits joined by dashes): {', '.join(malformed)}")
    repeated = sorted({product for product in products if products.count(product) > 1})
    if repeated:
        raise ListValueError(f"products listed more than once: {', '.join(repeated)}")
    return products


def _name(raw: str) -> str:
    if not raw or any(ch.isspace() for ch in raw):
        raise ValueError("must be a non-empty name without spaces")
    return raw


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        parsed = urlparse(raw)
        if parsed.scheme not in schemes or not parsed.netloc:
            raise ValueError(f"must be a {'/'.join(schemes)} URL")
        return raw

    return parse


def _host_ports(raw: str) -> str:
    for item in comma_list(raw):
        host, sep, port = item.rpartition(":")
        if not sep or not host:
            raise ValueError("must be comma-separated host:port pairs")
        _port(port)
    return raw


def _spark_master(raw: str) -> str:
    local = re.fullmatch(r"local(\[(\d+|\*)(,\d+)?\])?", raw)
    if not (local or raw == "yarn" or raw.startswith(("spark://", "k8s://"))):
        raise ValueError("must be local[N], spark://host:port, yarn or k8s://...")
    return raw


def _fraction(raw: str) -> float:
    value = float(raw)
    if not 0 < value < 1:
        raise ValueError("must be a number strictly between 0 and 1")
    return value


def _label_mode(raw: str) -> str:
    if raw not in LABEL_MODES:
        raise ValueError(f"must be one of {', '.join(LABEL_MODES)}")
    return raw


def _cron(raw: str) -> str:
    if len(raw.split()) != 5:
        raise ValueError("must be a cron expression of five fields, e.g. '0 2 * * *'")
    return raw


def _path(raw: str) -> Path:
    if not raw:
        raise ValueError("must be a path")
    path = Path(raw).expanduser()
    return path if path.is_absolute() else (PROJECT_ROOT / path)


def _optional_path(raw: str) -> Path | None:
    return _path(raw) if raw else None


def _share(raw: str) -> float:
    value = float(raw)
    if not 0 < value <= 1:
        raise ValueError("must be a share in (0, 1]")
    return value


def _bool(raw: str) -> bool:
    if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError("must be true or false")
    return raw.lower() in ("true", "1", "yes")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return raw

    return parse


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return level


def setting(env: str, default: str, parse: Callable[[str], Any], doc: str, *, group: str) -> Any:
    """Declares one setting: its variable, its default as the text a user would write, and the
    group of settings it belongs to (what a command's ``--help`` lists)."""
    return dataclasses.field(metadata={"env": env, "default": default, "parse": parse, "doc": doc, "group": group})


@dataclasses.dataclass(frozen=True)
class Settings:
    """The pipeline's configuration. Build with ``from_env``; pass it down, never re-read."""

    # Storage layout. Relative paths are resolved against the project root; an empty folder is derived from
    # PIPELINE_DATA_DIR at construction (__post_init__), so these paths are never None.
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

    # MLflow.
    mlflow_tracking_uri: str = setting(
        "MLFLOW_TRACKING_URI",
        "http://localhost:5001",
        _url("http", "https"),
        "MLflow tracking server.",
        group="mlflow",
    )
    mlflow_backend_store_uri: str = setting(
        "MLFLOW_BACKEND_STORE_URI",
        "",
        str,
        "Server's backend store (default sqlite:///DATA_DIR/mlflow/mlflow.db).",
        group="mlflow",
    )

    # Airflow (the embedded scheduler, dag-processor, triggerer and api-server).
    airflow_port: int = setting("AIRFLOW_PORT", "8080", _port, "Airflow API server and UI port.", group="airflow")
    airflow_parallelism: int = setting(
        "AIRFLOW_PARALLELISM",
        "4",
        _positive_int,
        "Task slots; each LocalExecutor worker costs ~50 MB.",
        group="airflow",
    )

    # Modeling.
    label_mode: str = setting(
        "LABEL_MODE",
        "relative",
        _label_mode,
        "Label: relative (forward vol >= k x a trailing vol), trailing (tau from the product's recent past), "
        "forward (tau fixed in training), or current (a leak).",
        group="modeling",
    )
    label_horizon: int = setting(
        "LABEL_HORIZON",
        "60",
        _positive_int,
        "H: future returns (ticks) of the forward volatility; also the embargo.",
        group="modeling",
    )
    label_quantile: float = setting(
        "LABEL_QUANTILE",
        "0.95",
        _fraction,
        "tau = this quantile of the forward volatility: over the trailing rows (trailing) or the training split "
        "(forward).",
        group="modeling",
    )
    label_relative_k: float = setting(
        "LABEL_RELATIVE_K",
        "2.0",
        _positive_float,
        "relative mode: y = 1 when forward vol >= k x the trailing vol.",
        group="modeling",
    )
    label_relative_column: str = setting(
        "LABEL_RELATIVE_COLUMN",
        "vol_300t",
        _name,
        "relative mode: the trailing volatility column.",
        group="modeling",
    )
    label_trailing_rows: int = setting(
        "LABEL_TRAILING_ROWS",
        "1500",
        _positive_int,
        "trailing mode: S, the product's past rows whose forward volatilities set tau (half of them needed).",
        group="modeling",
    )
    label_max_gap_seconds: float = setting(
        "LABEL_MAX_GAP_SECONDS",
        "30",
        _positive_float,
        "Longest silence between two ticks of a product that a label window (or a row's trailing windows) may span.",
        group="modeling",
    )
    model_name: str = setting(
        "MODEL_NAME", "volpipe-volatility", _name, "Registered model name in MLflow.", group="modeling"
    )
    mlflow_experiment: str = setting(
        "MLFLOW_EXPERIMENT",
        "volpipe-volatility",
        _name,
        "Experiment of training and evaluation runs.",
        group="modeling",
    )
    train_min_rows: int = setting(
        "TRAIN_MIN_ROWS",
        "1000",
        _positive_int,
        "Labelled rows a training needs at least (else TrainingDataError).",
        group="modeling",
    )
    walk_forward_folds: int = setting(
        "WALK_FORWARD_FOLDS",
        "5",
        _positive_int,
        "Expanding-window folds of the walk-forward evaluation.",
        group="modeling",
    )
    bootstrap_samples: int = setting(
        "BOOTSTRAP_SAMPLES",
        "200",
        _positive_int,
        "Moving-block bootstrap resamples of the PR-AUC differences (walk-forward and the promotion gate).",
        group="modeling",
    )
    model_seed: int = setting("MODEL_SEED", "42", int, "Seed of the models and the bootstrap.", group="modeling")
    train_schedule: str = setting(
        "TRAIN_SCHEDULE", "0 2 * * *", _cron, "Cron schedule (UTC) of the train_nightly DAG.", group="modeling"
    )
    train_window_days: int = setting(
        "TRAIN_WINDOW_DAYS",
        "7",
        _positive_int,
        "Days of features before the run that train_nightly trains on.",
        group="modeling",
    )

    # Supervision of the live path (`python -m volpipe.ops.services up ingestor stream`).
    restart_initial_seconds: float = setting(
        "RESTART_INITIAL_SECONDS",
        "1",
        _positive_float,
        "Wait before restarting a supervised process (ingestor, stream) that exited; doubles per restart.",
        group="supervise",
    )
    restart_max_seconds: float = setting(
        "RESTART_MAX_SECONDS",
        "60",
        _positive_float,
        "Cap of the restart backoff.",
        group="supervise",
    )
    restart_reset_seconds: float = setting(
        "RESTART_RESET_SECONDS",
        "300",
        _positive_float,
        "A supervised process that ran this long before exiting is restarted after RESTART_INITIAL_SECONDS again.",
        group="supervise",
    )

    # Monitoring and maintenance.
    reports_dir: Path = setting(
        "REPORTS_DIR",
        "",
        _optional_path,
        "Reports: Evidently under evidently/<date>/ (default DATA_DIR/reports).",
        group="monitoring",
    )
    monitoring_experiment: str = setting(
        "MONITORING_EXPERIMENT",
        "volpipe-monitoring",
        _name,
        "MLflow experiment of the monitoring runs.",
        group="monitoring",
    )
    monitoring_window_hours: float = setting(
        "MONITORING_WINDOW_HOURS",
        "24",
        _positive_float,
        "Current window of the drift reports: hours before its end.",
        group="monitoring",
    )
    drift_share_threshold: float = setting(
        "DRIFT_SHARE_THRESHOLD",
        "0.5",
        _share,
        "Share of drifted features from which the data counts as drifted.",
        group="monitoring",
    )
    drift_action: str = setting(
        "DRIFT_ACTION",
        "warn",
        _choice("fail", "warn"),
        "What the monitoring run does on drift: fail or warn.",
        group="monitoring",
    )
    drift_trigger_retrain: bool = setting(
        "DRIFT_TRIGGER_RETRAIN",
        "false",
        _bool,
        "On drift, ask for an early retrain (train_nightly).",
        group="monitoring",
    )
    delta_vacuum_retention_hours: float = setting(
        "DELTA_VACUUM_RETENTION_HOURS",
        "168",
        _positive_float,
        "VACUUM deletes unreferenced data files older than this (Delta's default: 7 days).",
        group="monitoring",
    )
    delta_vacuum_min_retention_hours: float = setting(
        "DELTA_VACUUM_MIN_RETENTION_HOURS",
        "168",
        _positive_float,
        "Lowest retention maintenance accepts without --force (readers and the stream need the files).",
        group="monitoring",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Reads every setting from ``environ`` (default ``os.environ``).

        Args:
            environ: Variables to read; missing ones take their documented default.
            **overrides: Already-parsed values that win over the environment (CLI flags).

        Returns:
            The frozen settings, with derived paths filled in.

        Raises:
            ConfigError: A variable is malformed; the message names it and its value.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            if field.name in overrides and overrides[field.name] is not None:
                values[field.name] = overrides[field.name]
                continue
            values[field.name] = setting_from_env(field.name, environ)
        unknown = set(overrides) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        settings = cls(**values)
        settings._check()
        return settings

    def _check(self) -> None:
        if self.reconnect_initial_seconds > self.reconnect_max_seconds:
            raise ConfigError(
                f"RECONNECT_INITIAL_SECONDS={self.reconnect_initial_seconds} exceeds "
                f"RECONNECT_MAX_SECONDS={self.reconnect_max_seconds}"
            )
        if self.restart_initial_seconds > self.restart_max_seconds:
            raise ConfigError(
                f"RESTART_INITIAL_SECONDS={self.restart_initial_seconds} exceeds "
                f"RESTART_MAX_SECONDS={self.restart_max_seconds}"
            )
        if self.reconnect_max_attempts < 0:
            raise ConfigError(f"RECONNECT_MAX_ATTEMPTS={self.reconnect_max_attempts} must be >= 0")
        for name, port in (("METRICS_PORT", self.metrics_port), ("STREAM_METRICS_PORT", self.stream_metrics_port)):
            if not 0 <= port < 65536:
                raise ConfigError(f"{name}={port} must be a port or 0")
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password_file
        ):
            raise ConfigError(
                f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs KAFKA_SASL_USERNAME and "
                "KAFKA_SASL_PASSWORD_FILE"
            )
        topics = (
            self.kafka_input_topic,
            self.kafka_output_topic,
            self.kafka_predictions_topic,
            self.kafka_deadletter_topic,
        )
        if len(set(topics)) != len(topics):
            raise ConfigError(
                "KAFKA_INPUT_TOPIC, KAFKA_OUTPUT_TOPIC, KAFKA_PREDICTIONS_TOPIC and KAFKA_DEADLETTER_TOPIC must differ"
            )

    def as_env(self) -> dict[str, str]:
        """The settings that differ from their defaults, as the variables that set them: the
        environment of a program the project starts (a supervised ingestor or stream) so that it
        runs with these settings. Defaults are left out: spark-submit's launcher overwrites an
        exported SPARK_JARS_DIR with its own jars folder."""

        def text(value: Any) -> str:
            if value is None:
                return ""
            if isinstance(value, bool):
                return "true" if value else "false"
            if isinstance(value, tuple):
                return ",".join(value)
            return str(value)

        defaults = Settings.from_env({})
        return {
            field.metadata["env"]: text(getattr(self, field.name))
            for field in dataclasses.fields(self)
            if getattr(self, field.name) != getattr(defaults, field.name)
        }

    def __post_init__(self) -> None:
        """Fills what was left empty (the parsers give None or "") from PIPELINE_DATA_DIR."""
        data = self.data_dir
        derived = {
            "raw_dir": data / "raw",
            "quarantine_dir": data / "quarantine",
            "delta_dir": data / "delta",
            "checkpoint_dir": data / "checkpoints",
            "reports_dir": data / "reports",
            "mlflow_backend_store_uri": f"sqlite:///{data / 'mlflow' / 'mlflow.db'}",
        }
        for name, default in derived.items():
            if not getattr(self, name):
                object.__setattr__(self, name, default)  # frozen: the one place a field is set after __init__

    # Names of every table and folder the pipeline writes, in one place.
    def delta_table(self, name: str) -> Path:
        """Path of the Delta table ``name`` (ticks, features, quarantine, features_replay, ...)."""
        return self.delta_dir / name

    def checkpoint(self, query: str) -> Path:
        """Checkpoint folder of the streaming query ``query``."""
        return self.checkpoint_dir / query

    @property
    def imports_dir(self) -> Path:
        """One manifest per imported recording (``<sha256>.json``): what makes re-imports no-ops."""
        return self.data_dir / "imports"

    @property
    def service_dir(self) -> Path:
        """Pid files, logs and data of the embedded services (Kafka, MLflow, Airflow)."""
        return self.data_dir / "services"

    @property
    def kafka_listener(self) -> tuple[str, int]:
        """Host and port the embedded broker listens on: the first bootstrap server."""
        host, _, port = self.kafka_bootstrap_servers.split(",")[0].strip().rpartition(":")
        return ("127.0.0.1" if host == "localhost" else host), int(port)

    def kafka_client_config(self) -> dict[str, str]:
        """What every confluent_kafka client (Producer, Consumer, AdminClient) starts from:
        brokers, security protocol and, as configured, SASL credentials and the CA file.

        Raises:
            ConfigError: KAFKA_SASL_PASSWORD_FILE cannot be read.
        """
        config = {"bootstrap.servers": self.kafka_bootstrap_servers, "security.protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol.startswith("SASL_"):
            config.update(
                {
                    "sasl.mechanism": self.kafka_sasl_mechanism,
                    "sasl.username": self.kafka_sasl_username,
                    "sasl.password": self._kafka_sasl_password(),
                }
            )
        if self.kafka_security_protocol.endswith("SSL") and self.kafka_ssl_ca_file:
            config["ssl.ca.location"] = str(self.kafka_ssl_ca_file)
        return config

    def spark_kafka_options(self) -> dict[str, str]:
        """The same settings for Spark's Kafka source and sink: Java client keys, ``kafka.``-prefixed.

        Raises:
            ConfigError: KAFKA_SASL_PASSWORD_FILE cannot be read.
        """
        options = {
            "kafka.bootstrap.servers": self.kafka_bootstrap_servers,
            "kafka.security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_security_protocol.startswith("SASL_"):
            module = (
                "org.apache.kafka.common.security.plain.PlainLoginModule"
                if self.kafka_sasl_mechanism == "PLAIN"
                else "org.apache.kafka.common.security.scram.ScramLoginModule"
            )
            user, password = (jaas_quoted(v) for v in (self.kafka_sasl_username, self._kafka_sasl_password()))
            options["kafka.sasl.mechanism"] = self.kafka_sasl_mechanism
            options["kafka.sasl.jaas.config"] = f"{module} required username={user} password={password};"
        if self.kafka_security_protocol.endswith("SSL") and self.kafka_ssl_ca_file:
            options["kafka.ssl.truststore.type"] = "PEM"
            options["kafka.ssl.truststore.location"] = str(self.kafka_ssl_ca_file)
        return options

    def _kafka_sasl_password(self) -> str:
        if self.kafka_sasl_password_file is None:  # from_env rules this out with SASL_*
            raise ConfigError("KAFKA_SASL_PASSWORD_FILE is not set")
        try:
            return self.kafka_sasl_password_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"KAFKA_SASL_PASSWORD_FILE={self.kafka_sasl_password_file} cannot be read: {exc}"
            ) from None

    @property
    def kafka_max_message_bytes(self) -> int:
        """Largest record the project writes to Kafka: the producer's and the embedded broker's
        ``message.max.bytes``. A dead letter escapes its frame as JSON text (``\\u00XX``: up to
        6 bytes per byte) inside an envelope, so the worst case of a frame of
        WS_MAX_MESSAGE_BYTES still fits."""
        return 6 * self.ws_max_message_bytes + 4096

    @property
    def mlflow_port(self) -> int:
        """Port of the embedded MLflow server: the one in MLFLOW_TRACKING_URI."""
        return urlparse(self.mlflow_tracking_uri).port or 5001


def jaas_quoted(value: str) -> str:
    """``value`` as a JAAS option value: in double quotes, with backslashes and quotes escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def setting_from_env(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """One setting (by field name) parsed from the environment, for code that runs before the
    whole ``Settings`` is read (logging set-up).

    Raises:
        ConfigError: The variable is malformed.
    """
    field = next(f for f in dataclasses.fields(Settings) if f.name == name)
    meta = field.metadata
    raw = (os.environ if environ is None else environ).get(meta["env"], meta["default"]).strip()
    try:
        return meta["parse"](raw)
    except ValueError as exc:
        raise ConfigError(f"{meta['env']}={raw!r} is invalid: {exc}") from None


def env_names() -> dict[str, str]:
    """Every variable the pipeline reads, with its default (for .env.example and tests)."""
    return {f.metadata["env"]: f.metadata["default"] for f in dataclasses.fields(Settings)}


def describe(*groups: str) -> list[tuple[str, str, str]]:
    """(variable, default, description) rows of ``groups`` (default: all), for docs and ``--help``."""
    return [
        (f.metadata["env"], f.metadata["default"], f.metadata["doc"])
        for f in dataclasses.fields(Settings)
        if not groups or f.metadata["group"] in groups
    ]


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m volpipe.config",
        description="Show the effective settings, or render .env.example / the docs table from the declarations.",
    )
    parser.add_argument("what", choices=["show", "env-example", "markdown"], nargs="?", default="show")
    args = parser.parse_args(argv)
    if args.what == "show":
        settings = Settings.from_env()
        for field in dataclasses.fields(Settings):
            print(f"{field.metadata['env']}={getattr(settings, field.name)}")
    elif args.what == "env-example":
        print("# Every setting of the pipeline with its default (python -m volpipe.config env-example).")
        print("# Copy to .env and uncomment what you change; `make` targets read the environment.")
        for name, default, doc in describe():
            print(f"\n# {doc}\n# {name}={default}")
    else:
        print("| variable | default | meaning |\n|---|---|---|")
        for name, default, doc in describe():
            print(f"| `{name}` | `{default}` | {doc} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
