"""Spark entrypoints: the features stream, the replay and the stream/replay comparison."""

from __future__ import annotations

import argparse
import datetime as dt


def add_date_range(parser: argparse.ArgumentParser) -> None:
    """``--start``/``--end`` UTC dates, shared by the replay and the comparison (``--end`` defaults to ``--start``)."""
    parser.add_argument("--start", type=dt.date.fromisoformat, required=True, help="first UTC date, YYYY-MM-DD")
    parser.add_argument("--end", type=dt.date.fromisoformat, help="last UTC date (default: --start)")
