"""The pipeline's failure modes, one class each, so callers catch what they can handle."""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose."""


class ConfigError(PipelineError):
    """Raised when a setting is missing or malformed; the message names the variable."""


class SchemaError(PipelineError):
    """Raised when a record does not have the shape the pipeline expects."""


class ReplayMismatch(PipelineError):
    """Raised when replayed features differ from the stream's for the same input."""


class ExhaustedRetries(PipelineError):
    """Raised when reconnecting gave up after the configured number of attempts."""


class ServiceError(PipelineError):
    """Raised when an embedded service (Kafka, MLflow, Airflow) fails to start or stop."""


class SetupError(PipelineError):
    """Raised when something `make setup` provides (jars, virtualenv) is missing."""


class MonitoringDataError(PipelineError):
    """Raised when a monitoring report lacks its input: a missing table, an empty window, missing columns."""


class ReferenceWindowError(PipelineError):
    """Raised when the champion model (alias, run or its training-window params) cannot give a reference window."""


class DriftDetected(PipelineError):
    """Raised when the share of drifted features reaches DRIFT_SHARE_THRESHOLD and DRIFT_ACTION is ``fail``."""


class MaintenanceError(PipelineError):
    """Raised when Delta maintenance is unsafe (retention below the minimum) or changed a table's row count."""
