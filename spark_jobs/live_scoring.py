"""Live scoring in the features stream: the champion, pinned per micro-batch, scores each feature row.

Driver: ``LiveScoring`` asks the registry where ``champion`` points every
``MODEL_REFRESH_SECONDS`` (in a thread: a slow or unreachable registry never delays a batch),
checks the new version's signature against the kernel's columns, downloads its estimator once,
loads it to prove it loads, hands the file to the workers (``SparkContext.addFile``: a
cluster's executors fetch it from the driver) and only then makes it the model to use. ``pin``
runs at the start of each micro-batch: it writes that model and its file name, as JSON, into a
Spark local property of the batch's jobs. A swap therefore happens between micro-batches, and
every task of a batch scores with the same version.

The pin of a logistic regression also carries its ``LinearScorer`` (its arrays, as JSON).

Workers: ``LiveScorer`` reads the pin from its task's local properties and, once per Python
worker and version, takes the ``LinearScorer`` it carries or loads the estimator file
(``registry.load_estimator_file``: no MLflow import, no registry call in a worker); it scores
with ``volpipe.modeling.models.probabilities``, the function batch inference uses. A row it
cannot score (no champion yet, a model that fails to load) keeps a null probability: features
are never held back by scoring. docs/streaming.md ("Live scoring") says why it runs inside the
stateful step.
"""

from __future__ import annotations

import atexit
import dataclasses
import hashlib
import json
import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from volpipe.config import Settings
from volpipe.errors import ModelRegistryError
from volpipe.features import FEATURE_COLUMNS
from volpipe.modeling import registry
from volpipe.modeling.models import LinearScorer, decide, probabilities

log = logging.getLogger(__name__)

PIN_PROPERTY = "volpipe.scoring.model"
# A worker's scorers (estimator or LinearScorer), by file name: Python workers are reused across
# batches, processors are not.
_SCORERS: dict[str, Any] = {}
_FAILED_LOADS: dict[str, float] = {}  # file name -> when loading it last failed
RELOAD_AFTER_FAILURE_SECONDS = 30.0


class ScoringMetrics:
    """The stream driver's scoring metrics (Prometheus, served on ``STREAM_METRICS_PORT``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.rows_scored = Counter(
            "volpipe_stream_rows_scored", "Feature rows scored by the live model.", registry=self.registry
        )
        self.rows_unscored = Counter(
            "volpipe_stream_rows_unscored", "Feature rows left without a prediction.", registry=self.registry
        )
        self.swaps = Counter(
            "volpipe_stream_model_swaps", "Times the stream changed the model it scores with.", registry=self.registry
        )
        self.model_version = Gauge(
            "volpipe_stream_model_version", "Registered version scoring now; 0 = none.", registry=self.registry
        )
        self.usable = Gauge(
            "volpipe_stream_champion_usable",
            "1 when the champion could be checked and used at the last look, else 0.",
            registry=self.registry,
        )
        self.batch_scoring_seconds = Histogram(
            "volpipe_stream_batch_scoring_seconds",
            "Model time per micro-batch, summed over its tasks.",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )


class LiveScoring:
    """The driver side: follows the ``champion`` alias and pins the model for each micro-batch."""

    def __init__(self, spark: Any, settings: Settings) -> None:
        registry.limit_retries()
        self.spark = spark
        self.settings = settings
        self.metrics = ScoringMetrics()
        # The model in use and its pin (model and estimator file, as the workers read it): one
        # reference, swapped whole, so a batch pins the old pair or the new one.
        self._current: tuple[registry.ScoringModel, str] | None = None
        # Kept until the process exits, not removed by stop(): Spark fetches a job file from its
        # source path for as long as the SparkContext lives, which may outlive this object.
        self._files = Path(tempfile.mkdtemp(prefix="volpipe-live-models-"))
        atexit.register(shutil.rmtree, self._files, ignore_errors=True)
        # Model time, added to by the workers' LiveScorer and merged here by Spark per task.
        self.scoring_seconds = spark.sparkContext.accumulator(0.0)
        self._seconds_seen = 0.0
        self._problem: str | None = None
        self._looked = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="champion-watcher", daemon=True)

    @property
    def model(self) -> registry.ScoringModel | None:
        """The model batches are pinned to now, or None."""
        current = self._current
        return current[0] if current else None

    def scorer(self) -> LiveScorer:
        """The worker side, for the stateful processor."""
        return LiveScorer(self.scoring_seconds)

    def start(self, first_look_seconds: float = 15.0) -> None:
        """Starts watching; waits up to ``first_look_seconds`` for the first look, so that a champion
        registered before the stream starts scores its first batch."""
        self._thread.start()
        self._looked.wait(first_look_seconds)

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while True:
            self.check()
            self._looked.set()
            if self._stop.wait(self.settings.model_refresh_seconds):
                return

    def check(self) -> None:
        """One look at the registry; swaps to a new usable champion, says once what is wrong otherwise."""
        tracking_uri, name = self.settings.mlflow_tracking_uri, self.settings.model_name
        try:
            found = registry.champion(tracking_uri, name)
            if found is None:
                self._unusable(f"no {registry.CHAMPION!r} alias on model {name!r} yet")
                return
            if self.model is not None and str(found.version) == self.model.version:
                self._usable()
                return
            model = registry.scoring_model(tracking_uri, name, found.version, allowed_columns=FEATURE_COLUMNS)
            pin = self._distribute(model)
        except ModelRegistryError as exc:
            self._unusable(str(exc))
            return
        except Exception as exc:  # MLflow raises many types when the server is away
            self._unusable(f"registry {tracking_uri} unreachable: {type(exc).__name__}: {exc}")
            return
        previous, self._current = self.model, (model, pin)
        self.metrics.swaps.inc()
        self.metrics.model_version.set(int(model.version))
        log.info(
            "live scoring model swapped model=%s version=%s previous=%s threshold=%.6g columns=%s",
            name,
            model.version,
            previous.version if previous else None,
            model.threshold,
            ",".join(model.columns),
        )
        self._usable()

    def _usable(self) -> None:
        self.metrics.usable.set(1)
        if self._problem is not None:
            log.info(
                "live scoring: champion usable again, scoring with version %s",
                self.model.version if self.model else None,
            )
        self._problem = None

    def _unusable(self, problem: str) -> None:
        self.metrics.usable.set(0)
        if problem != self._problem:  # once per distinct problem, not every interval
            keeping = f"; still scoring with version {self.model.version}" if self.model else "; features only"
            log.warning("live scoring: %s%s", problem, keeping)
        self._problem = problem

    def _distribute(self, model: registry.ScoringModel) -> str:
        """Downloads ``model``'s estimator, loads it once here, adds the file to the Spark job's
        files; returns the pin the workers read (model, file name, ``LinearScorer`` or null)."""
        downloaded = registry.download_estimator(
            self.settings.mlflow_tracking_uri, model, self._files / f"download-{model.version}"
        )
        # Named by content: Spark fails a task whose job file changed under the same name (a
        # registry reset while the stream runs, or tests sharing a session, reuse versions).
        digest = hashlib.sha256(downloaded.read_bytes()).hexdigest()[:16]
        file = self._files / f"{model.name}-v{model.version}-{digest}{downloaded.suffix}"
        downloaded.replace(file)
        shutil.rmtree(self._files / f"download-{model.version}")
        try:
            estimator = registry.load_estimator_file(file)
        except Exception as exc:  # skops raises many types; the old model keeps scoring
            raise ModelRegistryError(f"{model.uri} cannot be loaded: {type(exc).__name__}: {exc}") from None
        self.spark.sparkContext.addFile(str(file))
        # Scored from its arrays, a worker needs no scikit-learn (seconds of a first batch's CPU).
        linear = LinearScorer.of(estimator)
        return json.dumps(
            {"model": dataclasses.asdict(model), "file": file.name, "linear": linear.to_dict() if linear else None}
        )

    def pin(self, spark: Any) -> registry.ScoringModel | None:
        """Pins the current model for the micro-batch about to run on this thread; returns it."""
        current = self._current
        spark.sparkContext.setLocalProperty(PIN_PROPERTY, current[1] if current else None)
        return current[0] if current else None

    def record(self, scored: int, unscored: int) -> float:
        """Counts a finished batch's rows; returns the model time its tasks reported."""
        total = self.scoring_seconds.value
        seconds, self._seconds_seen = total - self._seconds_seen, total
        self.metrics.rows_scored.inc(scored)
        self.metrics.rows_unscored.inc(unscored)
        if scored:
            self.metrics.batch_scoring_seconds.observe(seconds)
        return seconds


def pinned_model() -> tuple[registry.ScoringModel, dict[str, Any]] | None:
    """The model the driver pinned for this task's micro-batch and the pin itself (in a Spark
    worker), or None."""
    from pyspark import TaskContext

    context = TaskContext.get()
    text = context.getLocalProperty(PIN_PROPERTY) if context is not None else None
    if not text:
        return None
    pin = json.loads(text)
    return registry.ScoringModel.from_dict(pin["model"]), pin


class LiveScorer:
    """Scores feature rows in a Spark worker with the pinned model (picklable: an accumulator only)."""

    def __init__(self, scoring_seconds: Any) -> None:
        self.scoring_seconds = scoring_seconds  # a Spark accumulator: model time, summed on the driver
        self.model: registry.ScoringModel | None = None
        self._scorer: Any = None

    def open(self) -> None:
        """Reads this batch's pin and gets its scorer (once per worker and version)."""
        pinned = pinned_model()
        self.model, self._scorer = (pinned[0], _scorer(pinned[1])) if pinned else (None, None)

    def score(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
        """Each row's probability and predicted label (int32), or None when there is no usable model."""
        if self._scorer is None or self.model is None:  # set together by open()
            return None
        began = time.perf_counter()
        probability = probabilities(self._scorer, rows[list(self.model.columns)])
        self.scoring_seconds.add(time.perf_counter() - began)
        return probability, decide(probability, self.model.threshold)


def _scorer(pin: dict[str, Any]) -> Any:
    """This worker's scorer for ``pin``: the ``LinearScorer`` it carries, or else the estimator in
    its job file, loaded on first use; None when that cannot be loaded (tried again after
    ``RELOAD_AFTER_FAILURE_SECONDS``, not on every batch)."""
    from pyspark import SparkFiles

    file = pin["file"]
    if file in _SCORERS:
        return _SCORERS[file]
    if pin["linear"] is not None:
        _SCORERS[file] = LinearScorer.from_dict(pin["linear"])
        return _SCORERS[file]
    if time.monotonic() - _FAILED_LOADS.get(file, -np.inf) < RELOAD_AFTER_FAILURE_SECONDS:
        return None
    try:
        _SCORERS[file] = registry.load_estimator_file(SparkFiles.get(file))
    except Exception:  # the stream goes on with features only for this version
        log.exception("live scoring: cannot load %s; its rows stay unscored", file)
        _FAILED_LOADS[file] = time.monotonic()
        return None
    return _SCORERS[file]
