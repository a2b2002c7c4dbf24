"""A Spark standalone cluster on this machine: one master and one worker from the pyspark package.

Inputs: a folder (pid files, logs, the worker's work and scratch dirs, the chosen ports) and the
worker's cores and memory. Output: a running master whose URL is what ``SPARK_MASTER`` takes;
the jobs are then submitted exactly as in local mode (``docs/scaling.md``)::

    python -m volpipe.ops.spark_cluster up --dir data/spark-cluster --cores 1 --memory 1g
    SPARK_MASTER=spark://127.0.0.1:7078 spark-submit $(python -m volpipe.spark submit-args) spark_jobs/replay.py ...
    python -m volpipe.ops.spark_cluster down --dir data/spark-cluster

It shows that the jobs run on a real cluster (``tests/integration/test_spark_cluster.py``); on
several machines, run the same two ``spark-class`` commands, one master and a worker per node.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from volpipe.errors import PipelineError
from volpipe.ops.services.process import ManagedProcess, free_port, port_open

STATE_FILE = "cluster.json"


@dataclasses.dataclass(frozen=True)
class StandaloneCluster:
    """Where a master and its worker run; saved in ``root`` so that ``down`` finds them from another shell."""

    root: Path
    master_port: int
    webui_port: int
    worker_webui_port: int
    cores: int = 1
    memory: str = "1g"
    host: str = "127.0.0.1"

    @classmethod
    def create(
        cls, root: Path, *, master_port: int = 0, webui_port: int = 0, cores: int = 1, memory: str = "1g"
    ) -> StandaloneCluster:
        """The cluster saved in ``root``, or a new one on the given (0: free) ports."""
        saved = cls.load(root)
        if saved is not None:
            return saved
        cluster = cls(root.resolve(), master_port or free_port(), webui_port or free_port(), free_port(), cores, memory)
        root.mkdir(parents=True, exist_ok=True)
        (root / STATE_FILE).write_text(json.dumps({**dataclasses.asdict(cluster), "root": str(cluster.root)}))
        return cluster

    @classmethod
    def load(cls, root: Path) -> StandaloneCluster | None:
        try:
            saved = json.loads((root / STATE_FILE).read_text())
        except FileNotFoundError:
            return None
        return cls(**{**saved, "root": Path(saved["root"])})

    @property
    def master_url(self) -> str:
        """The value of SPARK_MASTER (spark-submit's ``--master``)."""
        return f"spark://{self.host}:{self.master_port}"

    @property
    def webui_url(self) -> str:
        return f"http://{self.host}:{self.webui_port}"

    def state(self) -> dict:
        """The master's view (its web UI's ``/json/``: workers, active and completed applications); empty
        when it does not answer."""
        try:
            with urllib.request.urlopen(f"{self.webui_url}/json/", timeout=2) as response:
                return json.load(response)
        except (OSError, urllib.error.URLError, ValueError):
            return {}

    def alive_workers(self) -> list[dict]:
        """The workers the master lists as ALIVE."""
        return [worker for worker in self.state().get("workers", []) if worker.get("state") == "ALIVE"]

    def _process(self, name: str, main_class: str, args: list[str], ready) -> ManagedProcess:
        import pyspark

        spark_home = Path(pyspark.__file__).parent  # a pip-installed Spark distribution
        env = {
            "SPARK_HOME": str(spark_home),
            # Every daemon, executor and driver port on the loopback: one machine, nothing exposed.
            "SPARK_LOCAL_IP": self.host,
            # Executor scratch space (shuffle, spills) under the cluster's folder, not /tmp.
            "SPARK_LOCAL_DIRS": str(self.root / "local"),
            # Not the caller's: executors must find the project through the job's configuration
            # (spark.executorEnv.PYTHONPATH, volpipe/spark.py), as on a real cluster.
            "PYTHONPATH": "",
        }
        return ManagedProcess(
            name=name,
            argv=[str(spark_home / "bin" / "spark-class"), main_class, *args],
            run_dir=self.root,
            ready=ready,
            env=env,
            start_timeout=120,
            stop_timeout=20,
        )

    def master(self) -> ManagedProcess:
        return self._process(
            "spark-master",
            "org.apache.spark.deploy.master.Master",
            ["--host", self.host, "--port", str(self.master_port), "--webui-port", str(self.webui_port)],
            ready=lambda: port_open(self.host, self.master_port) and port_open(self.host, self.webui_port),
        )

    def worker(self) -> ManagedProcess:
        (self.root / "local").mkdir(parents=True, exist_ok=True)
        return self._process(
            "spark-worker",
            "org.apache.spark.deploy.worker.Worker",
            [
                self.master_url,
                "--host",
                self.host,
                "--cores",
                str(self.cores),
                "--memory",
                self.memory,
                "--webui-port",
                str(self.worker_webui_port),
                "--work-dir",
                str(self.root / "work"),
            ],
            # Registered with the master and offering its cores: an application submitted now gets an executor.
            ready=lambda: any(w["cores"] == self.cores for w in self.alive_workers()),
        )

    def up(self) -> None:
        """Starts the master, then the worker, and waits until the worker has registered (no-op when running).

        Raises:
            ServiceError: A daemon exited or did not get ready; the message quotes its log.
        """
        self.master().start()
        self.worker().start()

    def down(self) -> bool:
        """Stops the worker (and its executors), then the master. True when something ran."""
        stopped = self.worker().stop()
        return self.master().stop() or stopped


@contextlib.contextmanager
def running_cluster(root: Path, *, cores: int = 1, memory: str = "1g") -> Iterator[StandaloneCluster]:
    """A cluster on free ports under ``root``, always stopped afterwards (tests)."""
    cluster = StandaloneCluster.create(root, cores=cores, memory=memory)
    try:
        cluster.up()
        yield cluster
    finally:
        cluster.down()


def main(argv: list[str] | None = None) -> int:
    from volpipe.logs import configure_logging

    parser = argparse.ArgumentParser(
        prog="python -m volpipe.ops.spark_cluster",
        description=__doc__.split("\n")[0],
        epilog="up prints the master URL: export it as SPARK_MASTER and spark-submit the jobs as usual.",
    )
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--dir", type=Path, required=True, help="pid files, logs, work dirs and chosen ports")
    parser.add_argument("--master-port", type=int, default=0, help="master RPC port (default: a free one)")
    parser.add_argument("--webui-port", type=int, default=0, help="master web UI port (default: a free one)")
    parser.add_argument("--cores", type=int, default=1, help="cores the worker offers")
    parser.add_argument("--memory", default="1g", help="memory the worker offers to executors")
    args = parser.parse_args(argv)
    configure_logging()
    if args.action == "up":
        created = StandaloneCluster.create(
            args.dir, master_port=args.master_port, webui_port=args.webui_port, cores=args.cores, memory=args.memory
        )
        try:
            created.up()
        except PipelineError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"SPARK_MASTER={created.master_url}\nmaster UI {created.webui_url}  logs {created.root}")
        return 0
    cluster = StandaloneCluster.load(args.dir)
    if cluster is None:
        print(f"no cluster in {args.dir}")
        return 0 if args.action == "down" else 1
    if args.action == "down":
        print("stopped" if cluster.down() else "not running")
        return 0
    state, workers = cluster.state(), cluster.alive_workers()
    print(
        f"{cluster.master_url} workers alive: {len(workers)} "
        f"(cores {sum(w['cores'] for w in workers)}, used {sum(w['coresused'] for w in workers)}); "
        f"applications running: {', '.join(app['name'] for app in state.get('activeapps', [])) or 'none'}"
    )
    return 0 if workers else 1


if __name__ == "__main__":
    sys.exit(main())
