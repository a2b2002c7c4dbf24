"""Command line of the monitoring run: ``python -m volpipe.monitoring --help``.

Inputs: flags (the current window, products, the registered model) over the settings from
the environment. Output: the reports and verdict of ``volpipe.monitoring.run``, the verdict as
JSON on stdout. Exit code 0, or 1 when drift reached DRIFT_SHARE_THRESHOLD and DRIFT_ACTION
is ``fail``, or 2 when the run could not be made (no champion, no data).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import sys

from volpipe.config import Settings, parse_products
from volpipe.errors import DriftDetected, PipelineError


def _utc(text: str) -> dt.datetime:
    """An ISO date or datetime, read as UTC when it carries no offset."""
    value = dt.datetime.fromisoformat(text)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _share(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError("expected a share in (0, 1]")
    return value


def _ns(value: dt.datetime) -> int:
    return int(value.timestamp()) * 1_000_000_000 + value.microsecond * 1000


def main(argv: list[str] | None = None) -> int:
    """Runs one monitoring run and prints its verdict."""
    from volpipe.logs import configure_logging

    parser = argparse.ArgumentParser(
        prog="python -m volpipe.monitoring",
        description="Evidently drift, data-quality and prediction reports of a recent window against "
        "the champion model's training window (docs/monitoring.md).",
    )
    parser.add_argument("--model-name", help="registered model whose @champion is the reference (MODEL_NAME)")
    parser.add_argument("--end", type=_utc, help="end of the current window, UTC ISO datetime (default: now)")
    parser.add_argument(
        "--start", type=_utc, help="start of the current window (default: end - MONITORING_WINDOW_HOURS)"
    )
    parser.add_argument("--products", type=parse_products, help="comma-separated products (default: the champion's)")
    parser.add_argument("--date", help="report folder name under REPORTS_DIR/evidently (default: the end's UTC date)")
    parser.add_argument("--max-rows", type=int, default=None, help="sample each window down to this many rows")
    parser.add_argument("--drift-action", choices=["fail", "warn"], help="override DRIFT_ACTION")
    parser.add_argument("--share-threshold", type=_share, help="override DRIFT_SHARE_THRESHOLD")
    args = parser.parse_args(argv)
    configure_logging()
    from volpipe.monitoring.run import DEFAULT_MAX_ROWS, enforce, run_monitoring

    try:
        settings = Settings.from_env(drift_action=args.drift_action, drift_share_threshold=args.share_threshold)
        end = args.end or dt.datetime.now(dt.UTC)
        start = args.start or end - dt.timedelta(hours=settings.monitoring_window_hours)
        # MLflow prints "View run at ..." lines: keep stdout for the verdict alone.
        with contextlib.redirect_stdout(sys.stderr):
            verdict = run_monitoring(
                settings,
                args.model_name or settings.model_name,
                current_start_ns=_ns(start),
                current_end_ns=_ns(end),
                report_date=args.date,
                products=args.products,
                max_rows=args.max_rows or DEFAULT_MAX_ROWS,
            )
        print(json.dumps(verdict.to_dict(), indent=2, default=str))
        enforce(verdict)
    except DriftDetected as exc:
        print(f"drift: {exc}", file=sys.stderr)
        return 1
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
