"""Spark types of the pipeline's columns and the ONE transform that parses raw records.

Inputs: a DataFrame of raw records (docs/record-format.md) in a ``value`` column, binary
(Kafka) or string (NDJSON lines via ``spark.read.text``), plus a ``source`` string naming
where each came from. Output: one row per ticker with typed columns, or one row per
unusable record or ticker with an ``error`` reason and the raw bytes. The streaming job and
the replay both call ``parse_raw``, so they cannot disagree on parsing.

Every number is read as a string and cast in Spark (``try_cast``: a bad number is a null,
never a failed query under ANSI mode). The exchange timestamp becomes integer nanoseconds
by string arithmetic: Spark timestamps hold microseconds, Coinbase sends up to nine digits.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    BooleanType,
    DateType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from volpipe.features import FEATURE_COLUMNS
from volpipe.tables import MODEL_COLUMNS, PARTITION_COLUMN, PLACEHOLDER_INT_COLUMNS, layout_columns

if TYPE_CHECKING:
    from volpipe.modeling.registry import ScoringModel

_TICKER = StructType(
    [
        StructField(name, StringType())
        for name in ("product_id", "price", "best_bid", "best_ask", "best_bid_quantity", "best_ask_quantity")
    ]
)
RAW_SCHEMA = StructType(
    [
        StructField("ingest_seq", LongType()),
        StructField("recv_ns", LongType()),
        StructField("conn_id", StringType()),
        StructField(
            "msg",
            StructType(
                [
                    StructField("channel", StringType()),
                    StructField("timestamp", StringType()),
                    StructField("sequence_num", LongType()),
                    StructField(
                        "events",
                        ArrayType(
                            StructType(
                                [
                                    StructField("type", StringType()),
                                    StructField("tickers", ArrayType(_TICKER)),
                                ]
                            )
                        ),
                    ),
                ]
            ),
        ),
    ]
)

_PRICES = ("price", "best_bid", "best_ask", "best_bid_quantity", "best_ask_quantity")
_TYPES = {
    "product_id": StringType(),
    "ingest_seq": LongType(),
    "ticker_idx": LongType(),
    "conn_id": StringType(),
    "sequence_num": LongType(),
    "exchange_ts_ns": LongType(),
    "recv_ns": LongType(),
    "event_type": StringType(),
    **{name: DoubleType() for name in _PRICES},
    **{name: DoubleType() for name in FEATURE_COLUMNS},
    "mid_fallback": BooleanType(),
    "produced_ns": LongType(),
    "error": StringType(),
    "raw": BinaryType(),
    "source": StringType(),
    "kind": StringType(),
    "reason": StringType(),
    "probability": DoubleType(),
    "predicted_label": IntegerType(),
    "threshold": DoubleType(),
    "model_name": StringType(),
    "model_version": StringType(),
    "run_id": StringType(),
    "label_mode": StringType(),
    "exchange_ts": TimestampType(),
    "recv_ts": TimestampType(),
    PARTITION_COLUMN: DateType(),
}


def struct_of(columns: tuple[str, ...] | list[str]) -> StructType:
    """The Spark schema of ``columns`` (names from ``volpipe.tables``)."""
    return StructType([StructField(name, _TYPES[name]) for name in columns])


_TS = r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.(\d{1,9}))?Z$"


def _finite(column: Column) -> Column:
    """The number, or null when missing, NaN or infinite (so NaN never looks 'positive')."""
    return F.when(~F.isnan(column) & (F.abs(column) < F.lit(float("inf"))), column)


def exchange_ts_ns(text: Column) -> Column:
    """RFC 3339 UTC text with 0-9 fractional digits -> epoch nanoseconds, exactly; null if malformed.

    One regex check, then fixed positions: 'YYYY-MM-DDTHH:MM:SS' is 19 characters, the
    fraction (if any) runs from character 21 to the one before the final 'Z'. A time outside
    what int64 nanoseconds hold (before 1677 or after 2262) is null too: a plain multiply
    overflowed and failed the whole query under ANSI mode.
    """
    seconds = F.try_to_timestamp(F.concat(F.substring(text, 1, 19), F.lit("+00:00")), F.lit("yyyy-MM-dd'T'HH:mm:ssXXX"))
    fraction = F.rpad(
        F.when(F.length(text) > 21, text.substr(F.lit(21), F.length(text) - 21)).otherwise(F.lit("")), 9, "0"
    )
    nanos = F.try_multiply(F.unix_seconds(seconds), F.lit(1_000_000_000))
    return F.when(text.rlike(_TS), F.try_add(nanos, fraction.try_cast("long")))


def parse_raw(records: DataFrame) -> DataFrame:
    """Raw records -> one row per ticker, or per unusable record, in ``PARSED_COLUMNS``.

    Non-ticker messages (subscription acks, heartbeats) are valid but carry no tick: they
    are dropped. Good rows have ``error`` null and ``raw`` null (kept light for the
    stateful step); bad rows have the reason, the raw bytes, and a null ``product_id``.
    Each step is its own projection so that Spark computes every expensive expression
    once per row (it does not inline an expensive column referenced several times).

    Args:
        records: Columns ``value`` (binary or string) and ``source``.

    Returns:
        The parsed rows; ``sequence_num`` is -1 when the message had none.
    """
    rec = F.from_json(F.col("value").cast("string"), RAW_SCHEMA)
    parsed = records.select(F.col("value").cast("binary").alias("raw"), "source", rec.alias("r"))
    # Negative ingest_seq/recv_ns would read as the -1 "absent" placeholder downstream (nullable_ints).
    envelope_ok = F.coalesce(
        (F.col("r.ingest_seq") >= 0)
        & (F.col("r.recv_ns") >= 0)
        & F.col("r.conn_id").isNotNull()
        & F.col("r.msg.channel").isNotNull(),
        F.lit(False),
    )
    parsed = parsed.withColumn("envelope_ok", envelope_ok)
    # Tickers in message order (null if an event has none), their index the flattened position.
    # All compiled code: a nested transform() building (type, ticker) pairs was interpreted per
    # ticker, the costliest step of parsing (docs/streaming.md). The event types are repeated per
    # ticker instead, the slow way only for the rare message with several events.
    # Only a ticker message with a valid envelope is exploded: any other record stays one row, so
    # a bad record is quarantined once (not once per ticker) and an ack or heartbeat never yields ticks.
    events = F.col("r.msg.events")
    items = F.when(F.col("envelope_ok") & (F.col("r.msg.channel") == "ticker"), F.flatten(events["tickers"]))
    event_types = F.when(F.size(events) == 1, F.array_repeat(events[0]["type"], F.size(items))).otherwise(
        F.flatten(F.transform(events, lambda e: F.array_repeat(e["type"], F.size(e["tickers"]))))
    )
    # Only scalars and each row's own ticker cross the explode: carrying the whole message into each
    # of its n ticker rows cost n^2 (one 700 kB message of 10,000 tickers ran a 2 GB driver out of memory).
    flat = parsed.select(
        "raw",
        "source",
        "envelope_ok",
        F.col("r.ingest_seq").alias("ingest_seq"),
        F.col("r.recv_ns").alias("recv_ns"),
        F.col("r.conn_id").alias("conn_id"),
        F.col("r.msg.channel").alias("channel"),
        F.col("r.msg.sequence_num").alias("sequence_num"),
        F.col("r.msg.timestamp").alias("timestamp"),
        exchange_ts_ns(F.col("r.msg.timestamp")).alias("exchange_ts_ns"),
        F.arrays_zip(items.alias("ticker"), event_types.alias("event_type")).alias("items"),
    )
    exploded = flat.select(
        *(c for c in flat.columns if c != "items"), F.posexplode_outer("items").alias("ticker_idx", "item")
    )
    exploded = exploded.select("*", F.col("ticker_idx").isNull().alias("no_ticker"))
    # Filtered after the explode on purpose: a filter on `r` alone would be pushed below the
    # projection and re-run from_json once per condition.
    exploded = exploded.where(~F.col("no_ticker") | ~F.col("envelope_ok") | (F.col("channel") == "ticker"))
    typed = exploded.select(
        "raw",
        "source",
        "envelope_ok",
        "no_ticker",
        "ticker_idx",
        "ingest_seq",
        "recv_ns",
        "conn_id",
        "sequence_num",
        "timestamp",
        "exchange_ts_ns",
        F.col("item.ticker.product_id").alias("product"),
        F.col("item.event_type").alias("event_type"),
        *(F.col(f"item.ticker.{name}").try_cast("double").alias(name) for name in _PRICES),
    )
    typed = typed.select(
        *(F.col(c) for c in typed.columns if c not in _PRICES), *(_finite(F.col(n)).alias(n) for n in _PRICES)
    )
    bid, ask, product = F.col("best_bid"), F.col("best_ask"), F.col("product")
    usable_price = (F.col("price") > 0) | ((bid > 0) & (ask > 0) & (bid <= ask))
    error = (
        F.when(~F.col("envelope_ok"), F.lit("not a raw record (JSON with ingest_seq, recv_ns, conn_id, msg)"))
        .when(F.col("no_ticker"), F.lit("ticker message without tickers"))
        .when(product.isNull() | (product == ""), F.lit("ticker without product_id"))
        .when(
            F.col("exchange_ts_ns").isNull() | (F.col("exchange_ts_ns") < 0),
            F.concat(F.lit("unparseable exchange timestamp: "), F.coalesce(F.col("timestamp"), F.lit("missing"))),
        )
        .when(~F.coalesce(usable_price, F.lit(False)), F.lit("no positive price and no valid book"))
    )
    checked = typed.withColumn("error", error)
    bad = F.col("error").isNotNull()
    return checked.select(
        F.when(~bad, product).alias("product_id"),
        F.coalesce(F.col("ingest_seq"), F.lit(-1)).alias("ingest_seq"),
        F.coalesce(F.col("ticker_idx").cast("long"), F.lit(-1)).alias("ticker_idx"),
        "conn_id",
        F.coalesce(F.col("sequence_num"), F.lit(-1)).alias("sequence_num"),
        F.coalesce(F.col("exchange_ts_ns"), F.lit(-1)).alias("exchange_ts_ns"),
        F.coalesce(F.col("recv_ns"), F.lit(-1)).alias("recv_ns"),
        "event_type",
        *_PRICES,
        "error",
        F.when(bad, F.col("raw")).alias("raw"),
        F.when(bad, F.col("source")).alias("source"),
    )


def nullable_int_sql(column: str, alias: str | None = None) -> str:
    """SQL selecting ``column`` as ``alias``, a -1 placeholder of ``parse_raw`` turned back into a null."""
    kept = f"CASE WHEN `{column}` >= 0 THEN `{column}` END" if column in PLACEHOLDER_INT_COLUMNS else f"`{column}`"
    return f"{kept} AS `{alias or column}`"


def nullable_ints(frame: DataFrame, columns: tuple[str, ...]) -> DataFrame:
    """Turns the -1 placeholders of ``parse_raw`` (Arrow needs null-free ints) back into nulls."""
    return frame.selectExpr(*(nullable_int_sql(column) for column in columns))


def with_layout(frame: DataFrame, table: str) -> DataFrame:
    """Adds ``table``'s readable timestamp and ``date`` partition column (``volpipe.tables.layout_columns``)."""
    return frame.select("*", *(F.expr(sql).alias(name) for name, sql in layout_columns(table).items()))


def model_sql(model: ScoringModel | None) -> list[str]:
    """``MODEL_COLUMNS`` as SQL literals naming ``model`` (nulls for no model), for its predictions' rows.

    SQL text for ``selectExpr``, not ``F.lit`` columns: every ``F`` call is a round trip to the
    JVM, and the live stream builds its frame on every micro-batch (``delta_sink.stream_rows``,
    docs/streaming.md). Each value is cast from its text: ``str`` of a float is its shortest
    exact form, so the double read back is the same.
    """
    values = dataclasses.asdict(model) if model is not None else {}
    values["model_version"] = values.get("version")
    values["model_name"] = values.get("name")

    def literal(value: object) -> str:
        if value is None:
            return "NULL"
        return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"

    return [f"CAST({literal(values.get(name))} AS {_TYPES[name].simpleString()}) AS `{name}`" for name in MODEL_COLUMNS]
