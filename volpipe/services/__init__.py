"""Embedded services started by the project itself: Kafka (KRaft), MLflow and Airflow.

Each module has ``start(settings)`` and ``stop(settings)``; ``python -m volpipe.services``
is the command line the Makefile, the demo and the test fixtures all use.
"""

from __future__ import annotations

from volpipe.services import airflow, kafka, mlflow_server

SERVICES = {"kafka": kafka, "mlflow": mlflow_server, "airflow": airflow}
