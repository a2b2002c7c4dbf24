"""Checks that each service answers for real, used by the demo and the health-check DAG.

Inputs: ``Settings``. Outputs: a short dict per service describing what was verified; a
failed check raises ``ServiceError`` saying which service and why.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

from volpipe.config import Settings
from volpipe.errors import ServiceError


def check_kafka(settings: Settings) -> dict[str, Any]:
    """Produces one message to the dead-letter topic's health key and reads it back.

    Returns:
        Topics with their partition counts, and the round-trip time in milliseconds.
    """
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient

    bootstrap = settings.kafka_bootstrap_servers
    client = settings.kafka_client_config()
    try:
        metadata = AdminClient({**client}).list_topics(timeout=10)
    except Exception as exc:  # confluent raises KafkaException and friends
        raise ServiceError(f"kafka at {bootstrap} does not answer: {exc}") from exc
    wanted = (
        settings.kafka_input_topic,
        settings.kafka_output_topic,
        settings.kafka_predictions_topic,
        settings.kafka_deadletter_topic,
    )
    missing = [topic for topic in wanted if topic not in metadata.topics]
    if missing:
        raise ServiceError(f"kafka at {bootstrap} lacks topics {missing}: run `make up`")

    topic = settings.kafka_deadletter_topic
    token = f"healthcheck-{uuid.uuid4()}".encode()
    started = time.monotonic()
    delivered: list[Any] = []
    producer = Producer({**client, "acks": "all"})
    producer.produce(topic, key=b"healthcheck", value=token, on_delivery=lambda err, msg: delivered.append((err, msg)))
    producer.flush(15)
    if not delivered or delivered[0][0] is not None:
        raise ServiceError(f"kafka at {bootstrap}: health message not delivered: {delivered}")
    message = delivered[0][1]
    consumer = Consumer({**client, "group.id": "volpipe-healthcheck", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, message.partition(), message.offset())])
        for _ in range(20):
            read = consumer.poll(0.5)
            if read is not None and read.error() is None and read.value() == token:
                break
        else:
            raise ServiceError(f"kafka at {bootstrap}: health message not read back from {topic}")
    finally:
        consumer.close()
    return {
        "bootstrap": bootstrap,
        "topics": {name: len(metadata.topics[name].partitions) for name in wanted},
        "round_trip_ms": round((time.monotonic() - started) * 1000, 1),
    }


def check_mlflow(settings: Settings) -> dict[str, Any]:
    """Asks the tracking server for its experiments (a real query of its backend store)."""
    from mlflow.tracking import MlflowClient

    try:
        experiments = MlflowClient(settings.mlflow_tracking_uri).search_experiments(max_results=100)
    except Exception as exc:  # MlflowException and connection errors alike
        raise ServiceError(f"mlflow at {settings.mlflow_tracking_uri} does not answer: {exc}") from exc
    return {"tracking_uri": settings.mlflow_tracking_uri, "experiments": len(experiments)}


class AirflowClient:
    """The few Airflow REST v2 calls the project makes, authenticated as the admin user."""

    def __init__(self, settings: Settings) -> None:
        from volpipe.ops.services.airflow import password_file

        self.settings = settings
        self.base = f"http://127.0.0.1:{settings.airflow_port}"
        try:
            passwords = json.loads(password_file(settings).read_text())
        except (FileNotFoundError, ValueError) as exc:
            raise ServiceError(f"no Airflow admin password at {password_file(settings)}: is Airflow up?") from exc
        token = self._call("POST", "/auth/token", {"username": "admin", "password": passwords["admin"]}, auth=False)
        self.token = token["access_token"]

    def _call(self, method: str, path: str, body: dict | None = None, auth: bool = True) -> dict[str, Any]:
        request = urllib.request.Request(
            self.base + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **({"Authorization": f"Bearer {self.token}"} if auth else {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            raise ServiceError(f"airflow {method} {path}: HTTP {exc.code} {exc.read()[:300]!r}") from exc
        except OSError as exc:
            raise ServiceError(f"airflow {method} {path}: {exc}") from exc

    def dag(self, dag_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v2/dags/{dag_id}")

    def import_errors(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/v2/importErrors")["import_errors"]

    def trigger(self, dag_id: str, conf: dict | None = None, note: str | None = None) -> str:
        """Starts a run of ``dag_id`` now, paused or not, and leaves the DAG unpaused. Returns the run id.

        Unpausing a scheduled DAG makes Airflow schedule the run of its latest tick at once
        (``catchup=False``); a run triggered next to it would wait behind it. So a paused DAG's
        run takes that tick's logical date (the DAG's ``next_dagrun_logical_date``): the
        scheduler never creates a second run for one logical date, and schedules none beside it.
        """
        dag = self.dag(dag_id)
        logical_date = dag.get("next_dagrun_logical_date") if dag["is_paused"] else None
        body = {"logical_date": logical_date, "conf": conf or {}, **({"note": note} if note else {})}
        run = self._call("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)
        if dag["is_paused"]:
            self.unpause(dag_id)
        return run["dag_run_id"]

    def unpause(self, dag_id: str) -> None:
        self._call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def pause(self, dag_id: str) -> None:
        self._call("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": True})

    def active_runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Queued and running runs of ``dag_id``."""
        return self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns?state=queued&state=running")["dag_runs"]

    def dag_runs(self) -> list[dict[str, Any]]:
        """Every run of every DAG (dag_id, dag_run_id, run_type, state, note, ...), as the UI lists them."""
        runs: list[dict[str, Any]] = []
        while True:
            page = self._call("GET", f"/api/v2/dags/~/dagRuns?limit=100&offset={len(runs)}&order_by=run_after")
            runs += page["dag_runs"]
            if not page["dag_runs"] or len(runs) >= page["total_entries"]:
                return runs

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The run's task instances (task_id, state, try_number, ...), as the UI's grid shows them."""
        return self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]

    def return_value(self, dag_id: str, run_id: str, task_id: str) -> Any:
        """The XCom a task of a run returned (what the UI's XCom tab shows), or None."""
        try:
            entry = self._call(
                "GET",
                f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"
                "/xcomEntries/return_value?deserialize=true",
            )
        except ServiceError:
            return None
        return entry.get("value")

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        """Polls the run until it ends. Returns its final state (success, failed).

        A poll that fails (the API server busy or restarting) is retried until ``timeout``.
        """
        deadline = time.monotonic() + timeout
        problem = None
        while time.monotonic() < deadline:
            try:
                state = self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]
            except ServiceError as exc:
                problem = exc
                time.sleep(2)
                continue
            if state in ("success", "failed"):
                return state
            time.sleep(2)
        raise ServiceError(
            f"airflow run {dag_id}/{run_id} did not finish in {timeout:.0f}s"
            + (f" (last poll error: {problem})" if problem else "")
        )


def wait_for_dag(client: AirflowClient, dag_id: str, timeout: float = 180) -> dict[str, Any]:
    """Waits until the dag-processor has parsed ``dag_id`` (a fresh Airflow needs a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.dag(dag_id)
        except ServiceError:
            if time.monotonic() > deadline:
                raise
            time.sleep(3)


def check_airflow(settings: Settings, dag_id: str | None = None) -> dict[str, Any]:
    """Checks Airflow's health endpoint and the parsed DAGs; optionally runs ``dag_id`` to the end."""
    client = AirflowClient(settings)
    result: dict[str, Any] = {"ui": client.base, "import_errors": len(client.import_errors())}
    if result["import_errors"]:
        raise ServiceError(f"airflow has DAG import errors: {client.import_errors()}")
    if dag_id:
        wait_for_dag(client, dag_id)
        run_id = client.trigger(dag_id)
        try:
            state = client.wait_for_run(dag_id, run_id)
        finally:
            client.pause(dag_id)  # as found: nothing runs on its own afterwards
        if state != "success":
            raise ServiceError(f"airflow run {dag_id}/{run_id} ended {state}")
        result[dag_id] = state
    return result
