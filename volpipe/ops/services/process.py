"""Start, watch and stop one long-running service process, tracked by a pid file.

The embedded Kafka broker, MLflow server, Airflow and the supervisors of the live path all
run this way: detached in their own process group (so a stop reaches their children), output
in a log file, and a pid file beside it, so `up` is a no-op when the service already runs and
`down` works from another shell. A stop ends the whole process tree, not only the group.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from volpipe.errors import ServiceError

log = logging.getLogger(__name__)

# Usage telemetry of the bundled tools, off for every process the project starts: MLflow
# reads MLFLOW_DISABLE_TELEMETRY (server, UI banner and client), DO_NOT_TRACK is the
# cross-tool convention (consoledonottrack.com) MLflow also honours.
TELEMETRY_OFF = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def private_dir(path: Path) -> Path:
    """Creates ``path`` (and parents) and makes it owner-only (0700), also when it existed.

    Service folders hold generated secrets (Airflow's passwords and JWT secret) and logs
    that may print them; nobody else on the machine needs to read them.
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def private_file(path: Path) -> Path:
    """Creates ``path`` empty unless it exists and makes it owner-only (0600)."""
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    return path


def free_port() -> int:
    """A TCP port that nothing listens on right now (for tests and side-by-side runs)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ManagedProcess:
    """One service: how to run it, where its pid and log go, how to tell it is ready."""

    name: str
    argv: Sequence[str]
    run_dir: Path
    ready: Callable[[], bool]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    port: int | None = None
    start_timeout: float = 120.0
    stop_timeout: float = 30.0

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid of the running service, or None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            self.pid_file.unlink(missing_ok=True)
            return None
        if _is_zombie(pid):
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def start(self) -> bool:
        """Starts the service unless it runs already, then waits until it is ready.

        Returns:
            True when this call started it, False when it was already running.

        Raises:
            ServiceError: It exited or did not become ready within ``start_timeout``;
                the message quotes the end of its log.
        """
        if self.pid() is not None:
            log.info("service=%s already running pid=%s", self.name, self.pid())
            self.wait_ready()
            return False
        if self.port is not None and port_open("127.0.0.1", self.port):
            raise ServiceError(
                f"{self.name}: port {self.port} is taken by a process this project did not start "
                f"(no pid file in {self.run_dir}); stop it or choose another port"
            )
        private_dir(self.run_dir)
        with open(private_file(self.log_file), "ab") as out:
            proc = subprocess.Popen(
                list(self.argv),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.cwd,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        log.info("service=%s started pid=%s log=%s", self.name, proc.pid, self.log_file)
        self.wait_ready(proc)
        return True

    def wait_ready(self, proc: subprocess.Popen | None = None) -> None:
        deadline = time.monotonic() + self.start_timeout
        delay = 0.1
        while time.monotonic() < deadline:
            if self.ready():
                log.info("service=%s ready", self.name)
                return
            exited = proc.poll() if proc is not None else (None if self.pid() else -1)
            if exited is not None:
                self.pid_file.unlink(missing_ok=True)
                raise ServiceError(f"{self.name} exited with {exited} while starting:\n{self.tail_log()}")
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)
        raise ServiceError(
            f"{self.name} not ready after {self.start_timeout:.0f}s (log {self.log_file}):\n{self.tail_log()}"
        )

    def stop(self) -> bool:
        """Stops the service and its children: SIGTERM, then SIGKILL after ``stop_timeout``.

        Returns:
            True when it was running.
        """
        pid = self.pid()
        if pid is None:
            return False
        # Collected first: a child that left the group (Airflow runs each task in a group of its
        # own) or was orphaned by its parent's exit is out of reach of the group signal, not of this list.
        tree = process_tree(pid)
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if _alive(pid):
            log.warning("service=%s did not stop in %.0fs, killing pid=%s", self.name, self.stop_timeout, pid)
            _signal_group(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
        else:
            # The leader is gone; children that ignored SIGTERM must not linger.
            _signal_group(pid, signal.SIGKILL)
        kill_leftovers(tree, f"service={self.name}")
        self.pid_file.unlink(missing_ok=True)
        log.info("service=%s stopped", self.name)
        return True

    def tail_log(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


@dataclass
class SupervisorState:
    """What ``status`` shows of a supervised program: the supervisor saves it at every start and exit."""

    name: str
    supervisor_pid: int
    pid: int | None = None
    started_at: float | None = None
    restarts: int = 0
    last_exit: int | None = None
    last_exit_at: float | None = None

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        tmp.replace(path)  # readers never see half a file

    @classmethod
    def load(cls, path: Path) -> SupervisorState | None:
        """The saved state, or None when there is none (never started, or unreadable)."""
        try:
            return cls(**json.loads(path.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None


def process_tree(pid: int) -> list[psutil.Process]:
    """``pid`` and all its descendants, as of now (none when it is gone): collect before a stop."""
    try:
        leader = psutil.Process(pid)
        return [leader, *leader.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def kill_leftovers(processes: list[psutil.Process], owner: str) -> None:
    """SIGKILLs the processes still alive of those a stop should have ended, and reaps them.

    Args:
        processes: Collected before the stop (a child that left the group or was orphaned is
            out of reach of a group signal, not of this list).
        owner: Who left them, for the log (``service=kafka``, ``program=stream``).
    """
    for proc in processes:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:  # zombies are only reaped below
                log.warning("%s left pid=%d cmd=%s behind: killing it", owner, proc.pid, " ".join(proc.cmdline()[:3]))
                proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=10)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _is_zombie(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    if state == "Z":
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        return True
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not _is_zombie(pid)
