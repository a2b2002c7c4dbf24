"""The consumer's repeat filter: each row once, whatever prefixes a crashed stream published again."""

from __future__ import annotations

import subprocess
import sys

from volpipe.config import PROJECT_ROOT
from volpipe.consume import RepeatFilter


def _row(product: str, seq: int, idx: int = 0) -> dict:
    return {"product_id": product, "ingest_seq": seq, "ticker_idx": idx, "midprice": float(seq)}


def _keys(rows: list[dict]) -> list[tuple]:
    repeats = RepeatFilter()
    return [(r["product_id"], r["ingest_seq"], r["ticker_idx"]) for r in rows if repeats.first_time(r)]


def test_a_rerun_batch_published_again_is_passed_once():
    # Two products interleaved; a crash after batch 2 (seq 2..5) was published, the re-run
    # publishes it again (a prefix of it first, as a kill during the re-run's publish would),
    # then the stream goes on.
    batch1 = [_row("BTC-USD", 0), _row("ETH-USD", 1)]
    batch2 = [_row("BTC-USD", 2), _row("ETH-USD", 3), _row("BTC-USD", 4), _row("ETH-USD", 5)]
    batch3 = [_row("ETH-USD", 6), _row("BTC-USD", 7)]
    stream = batch1 + batch2 + batch2[:3] + batch2 + batch3
    assert (
        _keys(stream)
        == _keys(batch1 + batch2 + batch3)
        == [(r["product_id"], r["ingest_seq"], 0) for r in batch1 + batch2 + batch3]
    )


def test_counters_and_tickers_of_one_message_in_order():
    repeats = RepeatFilter()
    rows = [
        _row("BTC-USD", 10, 0),
        _row("BTC-USD", 10, 1),
        _row("BTC-USD", 10, 0),
        _row("BTC-USD", 10, 1),
        _row("BTC-USD", 10, 2),
        _row("BTC-USD", 9, 5),
    ]
    assert [repeats.first_time(r) for r in rows] == [True, True, False, False, True, False]
    assert (repeats.passed, repeats.dropped) == (3, 3)


def test_products_are_independent_and_memory_is_one_key_per_product():
    repeats = RepeatFilter()
    assert repeats.first_time(_row("BTC-USD", 100))
    assert repeats.first_time(_row("ETH-USD", 5))  # lower than BTC's, but ETH's first
    assert not repeats.first_time(_row("ETH-USD", 5))
    for seq in range(101, 10_000):
        assert repeats.first_time(_row("BTC-USD", seq))
    assert len(repeats._highest) == 2


def test_cli_help_names_its_options():
    out = subprocess.run(
        [sys.executable, "-m", "volpipe.consume", "--help"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for option in ("--topic", "--timeout", "--max-messages", "--new-only", "--bootstrap-servers"):
        assert option in out
