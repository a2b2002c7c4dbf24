"""The scaffold every batch Spark job's ``main`` shares: flags, logging, settings, one session, exit codes.

A job module builds its parser with ``job_parser`` (``prog``, description, ``--start``/``--end``),
adds its own flags and hands ``run_job`` a body ``(spark, settings, args) -> exit code``. Exit
codes are the same for every job: 2 for a usage error (argparse), 1 for a ``PipelineError`` the
body raised (logged with the job's failure message), else the body's.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from volpipe.config import Settings
from volpipe.dates import add_range_flags, range_from_args
from volpipe.errors import PipelineError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


def job_parser(prog: str, doc: str | None, *, date_range: bool = True) -> argparse.ArgumentParser:
    """A job's parser: described by the first line of ``doc`` (the module docstring); with
    ``date_range``, the ``--start``/``--end`` flags whose range ``run_job`` hands the body as ``args.dates``."""
    parser = argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n")[0])
    if date_range:
        add_range_flags(parser)
    return parser


def run_job(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    app_name: str,
    body: Callable[[SparkSession, Settings, argparse.Namespace], int],
    *,
    failure: str,
    overrides: Callable[[argparse.Namespace], Mapping[str, Any]] = lambda args: {},
    extra_conf: Mapping[str, str] | None = None,
) -> int:
    """Parses ``argv``, reads the settings (flags in ``overrides`` win), runs ``body`` in a session, stops it.

    Args:
        parser: From ``job_parser``, with the job's flags.
        argv: The command line (None: ``sys.argv``).
        app_name: The session's name in the Spark UI and logs.
        body: The job; returns its exit code.
        failure: What the log says before a ``PipelineError``'s message ("replay failed").
        overrides: Settings from the parsed flags (None values leave the environment's).
        extra_conf: Spark configuration of this job only.

    Returns:
        The exit code: the body's, or 1 when it raised a ``PipelineError``.
    """
    from volpipe.logs import configure_logging
    from volpipe.spark import build_spark_session

    args = parser.parse_args(argv)
    if "start" in vars(args):
        args.dates = range_from_args(parser, args)
    configure_logging()
    settings = Settings.from_env(**overrides(args))
    spark = build_spark_session(settings, app_name, extra_conf=extra_conf)
    try:
        return body(spark, settings, args)
    except PipelineError as exc:
        log.error("%s: %s", failure, exc)
        return 1
    finally:
        spark.stop()
