"""The pipeline's ``Settings``: every declared setting read from the environment, checked, with the
paths derived from them; and the tables of the declarations (``env_names``, ``describe``).

Input: the process environment. Output: a frozen ``Settings``. A malformed value, or values
that contradict each other, raise ``ConfigError`` naming the variables.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from volpipe.config.batch import BatchSettings
from volpipe.config.live import LiveSettings
from volpipe.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Settings(BatchSettings, LiveSettings):
    """The pipeline's configuration. Build with ``from_env``; pass it down, never re-read.

    The bases are listed batch first because a dataclass takes its bases' fields in reverse
    order: the live fields come first, the order of ``.env.example`` and the docs table.
    """

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
