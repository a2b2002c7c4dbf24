"""`make demo`: bring the pipeline's services up and show that each answers for real.

Starts Kafka, MLflow and Airflow (each a no-op when already running), then checks each:
a Kafka round trip, an MLflow query, and a run of the `pipeline_healthcheck` DAG through
Airflow's REST API. Later stages (ingestor, feature stream, training) join here as they land.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from volpipe import health
from volpipe.config import Settings
from volpipe.errors import PipelineError
from volpipe.logs import configure_logging
from volpipe.services import SERVICES

log = logging.getLogger(__name__)


def run(settings: Settings, *, run_dag: bool = True) -> dict[str, dict]:
    """Starts every service and checks it. Returns what each check verified."""
    results: dict[str, dict] = {}
    for name, service in SERVICES.items():
        started = time.monotonic()
        print(f"starting {name} ...", flush=True)
        service.start(settings)
        print(f"  {name} up in {time.monotonic() - started:.1f}s", flush=True)
    results["kafka"] = health.check_kafka(settings)
    results["mlflow"] = health.check_mlflow(settings)
    print("running the pipeline_healthcheck DAG through Airflow ...", flush=True)
    results["airflow"] = health.check_airflow(settings, dag_id="pipeline_healthcheck" if run_dag else None)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m volpipe.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--down", action="store_true", help="stop every service at the end")
    parser.add_argument("--no-dag", action="store_true", help="skip the DAG run (faster)")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    settings = Settings.from_env()
    try:
        results = run(settings, run_dag=not args.no_dag)
    except PipelineError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.down:
            for service in reversed(list(SERVICES.values())):
                service.stop(settings)
    print("\nall services healthy:")
    for name, result in results.items():
        print(f"  {name:8s} {json.dumps(result)}")
    if not args.down:
        from volpipe.services.airflow import password_file

        print(f"\nAirflow UI: http://127.0.0.1:{settings.airflow_port} (admin / password in {password_file(settings)})")
        print(f"MLflow UI:  {settings.mlflow_tracking_uri}")
        print("Stop everything with: make down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
