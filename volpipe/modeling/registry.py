"""The model registry in one place: ``models:/`` URIs, the ``champion`` alias, loading, promotion.

Inputs: the MLflow tracking URI and ``MODEL_NAME``. Outputs: the champion's version (or
None), loaded pyfunc models, and alias moves. Every consumer (training, batch inference, the
DAGs, monitoring) goes through these functions, so a model is always loaded by name and
alias or version, never from a free path (the stream's Spark workers load the file the driver
downloaded by version, ``download_estimator``). MLflow is imported inside the functions.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from volpipe.errors import ModelRegistryError

log = logging.getLogger(__name__)
CHAMPION = "champion"
# Run parameter holding the decision threshold of a model (read by batch inference).
THRESHOLD_PARAM = "decision_threshold"
# Types of the fitted boosting model (its trees, the function deriving its ratio features) that
# skops does not trust by default. We trust them because the registry only holds models
# ``volpipe.modeling.tracking`` wrote.
SKOPS_TRUSTED_TYPES = [
    "numpy.dtype",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "volpipe.modeling.models.with_ratios",
]


def limit_retries() -> None:
    """Makes MLflow calls of this process fail in seconds, not minutes, when the server is away
    (unless the environment says otherwise): for the stream, which must go on without it."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def reachable(tracking_uri: str, timeout: float = 5.0) -> bool:
    """Whether the tracking server answers its ``/health`` endpoint (a non-HTTP URI counts as reachable)."""
    import urllib.request

    if not tracking_uri.startswith(("http://", "https://")):
        return True
    try:
        with urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def model_uri(name: str, version: str | int | None = None, alias: str = CHAMPION) -> str:
    """``models:/NAME/VERSION`` when a version is given, else ``models:/NAME@ALIAS``."""
    return f"models:/{name}/{version}" if version is not None else f"models:/{name}@{alias}"


def client(tracking_uri: str) -> Any:
    """An ``MlflowClient`` bound to ``tracking_uri``."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def champion(tracking_uri: str, name: str) -> Any | None:
    """The ``ModelVersion`` that holds the ``champion`` alias, or None (no model, no alias)."""
    from mlflow.exceptions import MlflowException

    try:
        return client(tracking_uri).get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def resolve(tracking_uri: str, name: str, version: str | int | None = None) -> Any:
    """The ``ModelVersion`` of ``version``, or of the champion when ``version`` is None.

    Raises:
        ModelRegistryError: The model, the version or the alias does not exist.
    """
    from mlflow.exceptions import MlflowException

    if version is None:
        found = champion(tracking_uri, name)
        if found is None:
            raise ModelRegistryError(f"model {name!r} has no {CHAMPION!r} alias at {tracking_uri}: train one first")
        return found
    try:
        return client(tracking_uri).get_model_version(name, str(version))
    except MlflowException as exc:
        raise ModelRegistryError(f"model {name!r} version {version} not found at {tracking_uri}: {exc}") from None


@dataclasses.dataclass(frozen=True)
class ScoringModel:
    """What scoring needs of a registered version, without the model itself: small, JSON-able.

    Batch inference and the stream's live scoring both take one (``scoring_model``), load its
    estimator with ``load_estimator_file`` (batch inference through ``load_estimator``) and
    score with ``volpipe.modeling.models.probabilities``, so the same rows and version give the
    same probabilities bit for bit on either path. The stream pins it to each micro-batch as a
    dict (``dataclasses.asdict``, ``from_dict``).
    """

    name: str
    version: str
    run_id: str
    threshold: float
    label_mode: str
    columns: tuple[str, ...]

    @property
    def uri(self) -> str:
        return model_uri(self.name, self.version)

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> ScoringModel:
        return cls(**{**fields, "columns": tuple(fields["columns"])})


def scoring_model(
    tracking_uri: str, name: str, version: str | int | None = None, allowed_columns: tuple[str, ...] | None = None
) -> ScoringModel:
    """The ``ScoringModel`` of ``version`` (default: the champion), read from the registry.

    Reads the version, its run's parameters and the model's signature (the MLmodel file, not
    the model). With ``allowed_columns``, refuses a model that reads any other column.

    Raises:
        ModelRegistryError: No such version or champion, no signature or threshold, or a
            column outside ``allowed_columns``.
    """
    import mlflow
    from mlflow.models import get_model_info

    found = resolve(tracking_uri, name, version)
    # get_model_info resolves models:/ with the process-wide URIs, not a client's: set them, as
    # load() does (a spark-submit task may have no MLFLOW_TRACKING_URI in its environment).
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    schema = get_model_info(model_uri(name, found.version)).signature
    if schema is None or schema.inputs is None:
        raise ModelRegistryError(f"model {name!r} version {found.version} has no input signature")
    columns = tuple(schema.inputs.input_names())
    if allowed_columns is not None:
        unknown = [column for column in columns if column not in allowed_columns]
        if unknown:
            raise ModelRegistryError(
                f"model {name!r} version {found.version} reads columns the kernel does not compute: {unknown}"
            )
    params = client(tracking_uri).get_run(found.run_id).data.params
    return ScoringModel(
        name=name,
        version=str(found.version),
        run_id=found.run_id,
        threshold=decision_threshold(tracking_uri, found),
        label_mode=params.get("label_mode", "unknown"),
        columns=columns,
    )


def download_estimator(tracking_uri: str, model: ScoringModel, folder: Path) -> Path:
    """Downloads the serialized estimator of ``model`` (by version) into ``folder``; returns its file.

    Raises:
        ModelRegistryError: The version is not a scikit-learn model saved with skops (the only
            format ``volpipe.modeling.tracking`` writes).
    """
    import mlflow
    from mlflow.models import Model

    # The stream's and Airflow's logs are not terminals: no progress bar in them.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model.uri, dst_path=str(folder)))
    flavor = Model.load(local / "MLmodel").flavors.get("sklearn", {})
    if flavor.get("serialization_format") != "skops":
        raise ModelRegistryError(
            f"{model.uri} is not a scikit-learn model saved with skops: {flavor or 'no sklearn flavor'}"
        )
    return local / flavor["pickled_model"]


def load_estimator_file(path: Path | str) -> Any:
    """A downloaded estimator (``download_estimator``), trusting only the types training writes.

    Not the model's own trusted-types list, as ``mlflow.sklearn`` does: a model cannot widen
    what it is allowed to instantiate. Needs neither MLflow nor the registry, so a Spark worker
    loads it without importing MLflow (1.3 s of a cold micro-batch, docs/streaming.md).
    """
    import skops.io

    return skops.io.load(path, trusted=SKOPS_TRUSTED_TYPES)


def load_estimator(tracking_uri: str, model: ScoringModel) -> Any:
    """The fitted scikit-learn estimator of ``model``, from the registry (never a free path)."""
    with tempfile.TemporaryDirectory(prefix="volpipe-model-") as folder:
        return load_estimator_file(download_estimator(tracking_uri, model, Path(folder)))


def load(tracking_uri: str, name: str, version: str | int | None = None) -> tuple[Any, Any]:
    """Loads a registered model as pyfunc (``predict`` returns P(class 0), P(class 1) columns).

    Returns:
        (pyfunc model, its ``ModelVersion``). The version is resolved first, so a champion
        moved concurrently cannot make the two disagree.
    """
    import mlflow

    found = resolve(tracking_uri, name, version)
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return mlflow.pyfunc.load_model(model_uri(name, found.version)), found


def input_columns(model: Any) -> list[str]:
    """The feature columns of a pyfunc model, from its signature, in signature order."""
    schema = model.metadata.get_input_schema()
    if schema is None:
        raise ModelRegistryError("the model has no input signature: cannot tell which columns it reads")
    return list(schema.input_names())


def decision_threshold(tracking_uri: str, version: Any) -> float:
    """The decision threshold logged with the model version's run (``decision_threshold``)."""
    params = client(tracking_uri).get_run(version.run_id).data.params
    if THRESHOLD_PARAM not in params:
        raise ModelRegistryError(f"run {version.run_id} of version {version.version} logs no {THRESHOLD_PARAM}")
    return float(params[THRESHOLD_PARAM])


def promote(tracking_uri: str, name: str, version: str | int, tags: dict[str, str]) -> None:
    """Points ``champion`` at ``version`` and records why as version tags."""
    registry = client(tracking_uri)
    registry.set_registered_model_alias(name, CHAMPION, str(version))
    for key, value in tags.items():
        registry.set_model_version_tag(name, str(version), key, value)
    log.info("champion moved model=%s version=%s", name, version)
