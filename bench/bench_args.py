"""The flags every synthetic-data benchmark takes, defined once.

Benchmarks run as scripts (``.venv/bin/python bench/<name>.py``), so they import this
module by its name from their own folder.
"""

from __future__ import annotations

import argparse


def synthetic_data_parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by the first line of ``doc``, with ``--ticks`` and ``--products``
    (parsed into a tuple of product ids)."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--ticks", type=int, default=1_000_000, help="synthetic ticks (1000000)")
    parser.add_argument("--products", type=lambda text: tuple(p for p in text.split(",") if p),
                        default=("BTC-USD", "ETH-USD"), help="comma-separated products (BTC-USD,ETH-USD)")
    return parser
