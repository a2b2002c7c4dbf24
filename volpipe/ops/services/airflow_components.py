"""Airflow's scheduler, dag-processor, triggerer and api-server in one process group.

Input: the environment ``volpipe.ops.services.airflow.airflow_env`` builds (the embedded
Airflow's ``ManagedProcess`` runs this module). Output: the four components, as `airflow
standalone` runs them, except that the scheduler and the triggerer get
``--skip-serve-logs``: their task-log servers (ports 8793 and 8794) bind every interface,
and Airflow 3.3 has no setting for their address. Everything runs on one machine, so the
API server reads task logs from the files under AIRFLOW_HOME instead.
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import threading
from pathlib import Path

from volpipe.logs import configure_logging

log = logging.getLogger(__name__)

# The components `airflow standalone` runs, minus the log servers that would listen on 0.0.0.0.
COMPONENTS = (
    ("scheduler", "--skip-serve-logs"),
    ("dag-processor",),
    ("triggerer", "--skip-serve-logs"),
    ("api-server",),
)


def main(argv: list[str] | None = None) -> int:
    """Migrates the DB, runs the components until SIGTERM or until one exits, then stops the rest."""
    argparse.ArgumentParser(
        prog="python -m volpipe.ops.services.airflow_components",
        description="Run Airflow's scheduler, dag-processor, triggerer and api-server in this process group "
        "(as `airflow standalone`, without the task-log servers that listen on all interfaces). "
        "Configured by the environment `python -m volpipe.ops.services up airflow` sets.",
    ).parse_args(argv)
    configure_logging()
    airflow = str(Path(sys.executable).with_name("airflow"))
    migrate = subprocess.run([airflow, "db", "migrate"], check=False)
    if migrate.returncode:
        log.error("airflow db migrate failed returncode=%d", migrate.returncode)
        return 1
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):  # SIGINT: Ctrl-C when run in a terminal
        signal.signal(sig, lambda *_: stopping.set())
    children = {}
    for component in COMPONENTS:
        children[component[0]] = subprocess.Popen([airflow, *component])
        log.info("airflow component=%s started pid=%d", component[0], children[component[0]].pid)
    while not stopping.wait(1):
        exited = {name: proc.returncode for name, proc in children.items() if proc.poll() is not None}
        if exited:
            log.error("airflow components exited %s: stopping the others", exited)
            for proc in children.values():
                if proc.poll() is None:
                    proc.terminate()
            break
    else:
        # `down` signals the whole process group (a terminal's Ctrl-C too): the components
        # have their signal already, and a second one makes Airflow skip its clean shutdown.
        log.info("airflow stopping on a signal")
    for name, proc in children.items():
        log.info("airflow component=%s stopped returncode=%s", name, proc.wait())
    return 0 if stopping.is_set() else 1


if __name__ == "__main__":
    sys.exit(main())
