"""Start, stop and check the embedded services.

    python -m volpipe.services up [kafka mlflow airflow]
    python -m volpipe.services down [...]
    python -m volpipe.services status [...]

`up` is a no-op for a service that already runs; `down` stops in reverse order.
"""

from __future__ import annotations

import argparse
import sys

from volpipe.config import Settings, describe
from volpipe.errors import PipelineError
from volpipe.logs import configure_logging
from volpipe.services import SERVICES, airflow, kafka, mlflow_server


def _where(name: str, settings: Settings) -> str:
    if name == "kafka":
        host, port = settings.kafka_listener
        return f"bootstrap {host}:{port}, data {settings.data_dir / 'kafka'}"
    if name == "mlflow":
        return f"UI {settings.mlflow_tracking_uri}, data {settings.data_dir / 'mlflow'}"
    return (
        f"UI http://127.0.0.1:{settings.airflow_port} (user admin, password in "
        f"{airflow.password_file(settings)}), home {airflow.airflow_home(settings)}"
    )


def _process(name: str, settings: Settings):
    return {
        "kafka": kafka.broker,
        "mlflow": mlflow_server.server,
        "airflow": airflow.standalone,
    }[name](settings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m volpipe.services",
        description="Start, stop or check the embedded Kafka broker, MLflow server and Airflow.",
        epilog="Settings come from the environment: "
        + ", ".join(name for name, _, _ in describe() if name.startswith(("KAFKA", "MLFLOW", "AIRFLOW", "PIPELINE"))),
    )
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("services", nargs="*", metavar="SERVICE", help=f"any of {', '.join(SERVICES)} (default: all)")
    parser.add_argument("--log-level", default=None)
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    names = args.services or list(SERVICES)
    unknown = [name for name in names if name not in SERVICES]
    if unknown:
        parser.error(f"unknown service(s): {', '.join(unknown)}; choose from {', '.join(SERVICES)}")
    try:
        settings = Settings.from_env()
        if args.action == "up":
            for name in names:
                SERVICES[name].start(settings)
                print(f"{name:8s} healthy  {_where(name, settings)}", flush=True)
        elif args.action == "down":
            for name in reversed(names):
                stopped = SERVICES[name].stop(settings)
                print(f"{name:8s} {'stopped' if stopped else 'not running'}", flush=True)
        else:
            down = 0
            for name in names:
                process = _process(name, settings)
                pid = process.pid()
                healthy = pid is not None and process.ready()
                down += not healthy
                state = "healthy" if healthy else ("starting/unhealthy" if pid else "down")
                print(f"{name:8s} {state:9s} {_where(name, settings)}", flush=True)
            return 1 if down else 0
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
