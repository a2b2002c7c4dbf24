"""Keep one program running: restart it with capped exponential backoff when it exits.

Input: the program's argv (after ``--``), RESTART_* settings. Output: the program running in
its own process group, and a ``SupervisorState`` file (JSON: program pid, start time,
restarts, last exit) that ``status`` reads. The live path (ingestor, stream) runs under this
supervisor, itself a ``ManagedProcess``, so `up`, `down` and `status` treat it like the
other services.

The supervisor is a child subreaper: a program's orphans (a Python driver whose spark-submit
JVM was killed) become its children, and it kills them before restarting, so nothing of an
old run lingers. On SIGTERM/SIGINT it sends SIGTERM to the program alone (as systemd's
``KillMode=mixed``: a signal to the whole group would also kill the Python workers of the
stream's batch in flight), waits ``--stop-timeout`` seconds, then kills what is left of the tree.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from volpipe.config import Settings, describe
from volpipe.logs import configure_logging
from volpipe.ops.services.process import SupervisorState, kill_leftovers

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36


def backoff(previous: float, ran_seconds: float, settings: Settings) -> float:
    """The wait before the next restart: doubled each time, capped, reset after a long run.

    Args:
        previous: The last wait (0 before the first restart).
        ran_seconds: How long the program ran before it exited.
        settings: RESTART_INITIAL_SECONDS, RESTART_MAX_SECONDS, RESTART_RESET_SECONDS.
    """
    if previous <= 0 or ran_seconds >= settings.restart_reset_seconds:
        return settings.restart_initial_seconds
    return min(previous * 2, settings.restart_max_seconds)


def _become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        log.warning("not a child subreaper (errno=%d): orphans of the program may outlive it", ctypes.get_errno())


def _stop_with_supervisor() -> None:
    """In the child before exec: SIGTERM when the supervisor dies (even by SIGKILL), so a program
    is never left running without the supervisor that `down` and `status` know of."""
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def supervise(name: str, argv: list[str], state_file: Path, stop_timeout: float, settings: Settings) -> int:
    """Runs ``argv`` until SIGTERM/SIGINT, restarting it whenever it exits. Returns 0."""
    _become_subreaper()
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    state = SupervisorState(name=name, supervisor_pid=os.getpid())
    wait = 0.0
    child: subprocess.Popen | None = None
    while not stopping.is_set():
        # Its own process group, away from the signals `down` sends to ours.
        child = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, process_group=0, preexec_fn=_stop_with_supervisor
        )  # preexec_fn is safe: no other thread here
        state.pid, state.started_at = child.pid, time.time()
        state.save(state_file)
        log.info("program=%s started pid=%d restarts=%d", name, child.pid, state.restarts)
        while child.poll() is None and not stopping.wait(0.5):
            pass
        if stopping.is_set():
            break
        ran = time.time() - state.started_at
        kill_leftovers(psutil.Process().children(recursive=True), f"program={name}")
        wait = backoff(wait, ran, settings)
        state.restarts += 1
        state.pid, state.last_exit, state.last_exit_at = None, child.returncode, time.time()
        state.save(state_file)
        log.warning(
            "program=%s exited returncode=%s after %.1fs: restart %d in %.1fs",
            name,
            child.returncode,
            ran,
            state.restarts,
            wait,
        )
        stopping.wait(wait)
    if child is None:
        return 0
    if child.poll() is None:
        log.info("program=%s stopping pid=%d timeout=%.0fs", name, child.pid, stop_timeout)
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(stop_timeout)
        except subprocess.TimeoutExpired:
            log.warning("program=%s did not stop in %.0fs: killing it", name, stop_timeout)
    kill_leftovers(psutil.Process().children(recursive=True), f"program={name}")
    child.wait()
    state.pid, state.last_exit, state.last_exit_at = None, child.returncode, time.time()
    state.save(state_file)
    log.info("program=%s stopped returncode=%s", name, child.returncode)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m volpipe.ops.services.supervisor",
        description="Run a program and restart it with capped exponential backoff whenever it exits; "
        "SIGTERM/SIGINT stop it politely (SIGTERM to the program, then SIGKILL to its whole tree after "
        "--stop-timeout).",
        epilog="Settings: "
        + ", ".join(n for n, _, _ in describe("supervise"))
        + ". Example: ... supervisor --name ingestor --state data/ingestor/ingestor.state.json -- python -m ingest",
    )
    parser.add_argument("--name", required=True, help="the program's name in logs and state")
    parser.add_argument("--state", required=True, type=Path, help="JSON state file (pid, start, restarts)")
    parser.add_argument("--stop-timeout", type=float, default=30.0, help="seconds SIGTERM may take (default 30)")
    parser.add_argument("program", nargs=argparse.REMAINDER, help="-- argv of the program")
    args = parser.parse_args(argv)
    program = args.program[1:] if args.program[:1] == ["--"] else args.program
    if not program:
        parser.error("no program given after --")
    configure_logging()
    return supervise(args.name, program, args.state, args.stop_timeout, Settings.from_env())


if __name__ == "__main__":
    sys.exit(main())
