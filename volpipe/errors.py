"""The pipeline's failure modes, one class each, so callers catch what they can handle."""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose."""


class ConfigError(PipelineError):
    """Raised when a setting is missing or malformed; the message names the variable."""


class ReplayMismatch(PipelineError):
    """Raised when replayed features differ from the stream's for the same input."""


class KernelMismatch(PipelineError):
    """Raised when a features table was computed with other kernel parameters (W, windows, version)."""


class TableLayoutError(PipelineError):
    """Raised when a Delta table exists with another layout than the pipeline writes (partitions)."""


class ExhaustedRetries(PipelineError):
    """Raised when reconnecting gave up after the configured number of attempts."""


class ServiceError(PipelineError):
    """Raised when an embedded service (Kafka, MLflow, Airflow) fails to start or stop."""


class SetupError(PipelineError):
    """Raised when something `make setup` provides (jars, virtualenv) is missing."""


class HarnessError(PipelineError):
    """Raised when a process the harness drives (exchange, ingestor) exits or fails to answer."""


class StorageError(PipelineError):
    """Raised when the ingestor cannot write its NDJSON files (disk full, read-only folder, ...);
    the message names the path and the errno."""


class ResendError(PipelineError):
    """Raised when logged ingest_seq ranges cannot be re-sent (bad range, file or broker)."""


class RecordingImportError(PipelineError):
    """Raised when a recording cannot be imported: an earlier import of the same content was
    interrupted (its records may be partly stored), or the file cannot be read."""


class TrainingDataError(PipelineError):
    """Raised when the data cannot train or evaluate a model: too few rows, a missing column,
    no labelled row, or a single class in a split; the message names the cause and the split."""


class TrackingUnavailable(PipelineError):
    """Raised when the MLflow tracking server does not answer; the message names its URI."""


class ModelRegistryError(PipelineError):
    """Raised when a registered model or alias (e.g. ``@champion``) cannot be found or loaded."""


class MonitoringDataError(PipelineError):
    """Raised when a monitoring report lacks its input: a missing table, an empty window, missing columns."""


class TableReadError(TrainingDataError, MonitoringDataError):
    """Raised when a window of a Delta table cannot be read: no table at the path, or a column
    asked for is absent. Training, evaluation and monitoring all lack their input then, so it
    is each one's data error (a training run is skipped, a monitoring run stops with a reason)."""


class ReferenceWindowError(PipelineError):
    """Raised when the champion model (alias, run or its training-window params) cannot give a reference window."""


class DriftDetected(PipelineError):
    """Raised when the share of drifted features reaches DRIFT_SHARE_THRESHOLD and DRIFT_ACTION is ``fail``."""


class MaintenanceError(PipelineError):
    """Raised when Delta maintenance is unsafe (retention below the minimum) or changed a table's row count."""
