"""The model registry in one place: ``models:/`` URIs, the ``champion`` alias, loading, promotion.

Inputs: the MLflow tracking URI and ``MODEL_NAME``. Outputs: the champion's version (or
None), loaded pyfunc models, and alias moves. Every consumer (training, batch inference, the
DAGs, monitoring) goes through these functions, so a model is always loaded by name and
alias or version, never from a free path. MLflow is imported inside the functions.
"""

from __future__ import annotations

import logging
from typing import Any

from volpipe.errors import ModelRegistryError

log = logging.getLogger(__name__)
CHAMPION = "champion"
# Run parameter holding the decision threshold of a model (read by batch inference).
THRESHOLD_PARAM = "decision_threshold"


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
