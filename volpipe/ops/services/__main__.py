"""Start, stop and check the embedded services and the supervised live path.

    python -m volpipe.ops.services up [kafka mlflow airflow stream ingestor]
    python -m volpipe.ops.services down [...]
    python -m volpipe.ops.services status [...]

`up` without names starts kafka, mlflow and airflow; `make live` starts kafka, stream and
ingestor. `up` is a no-op for a service that already runs; `down` (all by default) stops in
reverse order: ingestor, stream, airflow, mlflow, kafka.
"""

from __future__ import annotations

import argparse
import sys

from volpipe.config import Settings, describe
from volpipe.errors import PipelineError
from volpipe.logs import configure_logging
from volpipe.ops.services import ALL_SERVICES, SERVICES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m volpipe.ops.services",
        description="Start, stop or check the embedded Kafka broker, MLflow server and Airflow, and the supervised "
        "ingestor and feature stream (restarted with capped backoff when they exit).",
        epilog="Settings come from the environment: "
        + ", ".join(name for name, _, _ in describe("storage", "logging", "kafka", "mlflow", "airflow", "supervise")),
    )
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument(
        "services",
        nargs="*",
        metavar="SERVICE",
        help=f"any of {', '.join(ALL_SERVICES)} (default: {' '.join(SERVICES)} for up, all for down and status)",
    )
    parser.add_argument("--log-level", default=None)
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    names = args.services or list(SERVICES if args.action == "up" else ALL_SERVICES)
    unknown = [name for name in names if name not in ALL_SERVICES]
    if unknown:
        parser.error(f"unknown service(s): {', '.join(unknown)}; choose from {', '.join(ALL_SERVICES)}")
    try:
        settings = Settings.from_env()
        if args.action == "up":
            for name in names:
                ALL_SERVICES[name].start(settings)
                print(f"{name:8s} healthy  {ALL_SERVICES[name].where(settings)}", flush=True)
        elif args.action == "down":
            for name in reversed(names):
                stopped = ALL_SERVICES[name].stop(settings)
                print(f"{name:8s} {'stopped' if stopped else 'not running'}", flush=True)
        else:
            down = 0
            for name in names:
                process = ALL_SERVICES[name].process(settings)
                pid = process.pid()
                healthy = pid is not None and process.ready()
                # Without names, a live path nobody started is not a failure; a platform service down is.
                down += not healthy and bool(args.services or name in SERVICES or pid)
                state = "healthy" if healthy else ("starting/unhealthy" if pid else "down")
                print(f"{name:8s} {state:9s} {ALL_SERVICES[name].where(settings)}", flush=True)
            return 1 if down else 0
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
