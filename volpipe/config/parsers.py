"""How a setting is declared (``setting``) and how its text is parsed: one function per kind of value.

Input: the raw text of a variable. Output: the parsed value, or a ``ValueError`` whose message
``setting_from_env`` turns into a ``ConfigError`` naming the variable. The underscore parsers
are private to ``volpipe.config``; ``comma_list`` and ``parse_products`` also parse flags and
run params.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
# The label modes (volpipe.modeling.label defines them; here so that parsing LABEL_MODE imports nothing).
LABEL_MODES = ("relative", "trailing", "forward", "current")


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 < value < 65536:
        raise ValueError("must be a TCP port (1-65535)")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be a positive number")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if not value >= 0:
        raise ValueError("must be zero or a positive number")
    return value


def _host(raw: str) -> str:
    if not raw or any(ch.isspace() or ch in "/:" for ch in raw):
        raise ValueError("must be a host name or IPv4 address, e.g. 127.0.0.1")
    return raw


class ListValueError(ValueError, argparse.ArgumentTypeError):
    """Raised when a comma-separated list is malformed: a ``ValueError`` to a setting (which names
    the variable) and an ``ArgumentTypeError`` to argparse, the one kind whose text argparse prints."""


def comma_list(raw: str) -> tuple[str, ...]:
    """The items of ``raw``, comma-separated, stripped, empty ones dropped; at least one."""
    items = tuple(item.strip() for item in raw.split(",") if item.strip())
    if not items:
        raise ListValueError("must list at least one comma-separated value")
    return items


def parse_products(raw: str) -> tuple[str, ...]:
    """Product ids from a comma-separated list: ``PRODUCT_IDS``, every ``--products`` flag, run params.

    Raises:
        ListValueError: No id, an id that is not letters or digits joined by dashes (``BTC-USD``), or an id twice.
    """
    products = comma_list(raw)
    malformed = [product for product in products if not re.fullmatch(r"[A-Za-z0-9]+(-[A-Za-z0-9]+)*", product)]
    if malformed:
        raise ListValueError(f"not product ids (letters or digits joined by dashes): {', '.join(malformed)}")
    repeated = sorted({product for product in products if products.count(product) > 1})
    if repeated:
        raise ListValueError(f"products listed more than once: {', '.join(repeated)}")
    return products


def _name(raw: str) -> str:
    if not raw or any(ch.isspace() for ch in raw):
        raise ValueError("must be a non-empty name without spaces")
    return raw


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        parsed = urlparse(raw)
        if parsed.scheme not in schemes or not parsed.netloc:
            raise ValueError(f"must be a {'/'.join(schemes)} URL")
        return raw

    return parse


def _host_ports(raw: str) -> str:
    for item in comma_list(raw):
        host, sep, port = item.rpartition(":")
        if not sep or not host:
            raise ValueError("must be comma-separated host:port pairs")
        _port(port)
    return raw


def _spark_master(raw: str) -> str:
    local = re.fullmatch(r"local(\[(\d+|\*)(,\d+)?\])?", raw)
    if not (local or raw == "yarn" or raw.startswith(("spark://", "k8s://"))):
        raise ValueError("must be local[N], spark://host:port, yarn or k8s://...")
    return raw


def _fraction(raw: str) -> float:
    value = float(raw)
    if not 0 < value < 1:
        raise ValueError("must be a number strictly between 0 and 1")
    return value


def _label_mode(raw: str) -> str:
    if raw not in LABEL_MODES:
        raise ValueError(f"must be one of {', '.join(LABEL_MODES)}")
    return raw


def _cron(raw: str) -> str:
    if len(raw.split()) != 5:
        raise ValueError("must be a cron expression of five fields, e.g. '0 2 * * *'")
    return raw


def _path(raw: str) -> Path:
    if not raw:
        raise ValueError("must be a path")
    path = Path(raw).expanduser()
    return path if path.is_absolute() else (PROJECT_ROOT / path)


def _optional_path(raw: str) -> Path | None:
    return _path(raw) if raw else None


def _share(raw: str) -> float:
    value = float(raw)
    if not 0 < value <= 1:
        raise ValueError("must be a share in (0, 1]")
    return value


def _bool(raw: str) -> bool:
    if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError("must be true or false")
    return raw.lower() in ("true", "1", "yes")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return raw

    return parse


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
    return level


def setting(env: str, default: str, parse: Callable[[str], Any], doc: str, *, group: str) -> Any:
    """Declares one setting: its variable, its default as the text a user would write, and the
    group of settings it belongs to (what a command's ``--help`` lists)."""
    return dataclasses.field(metadata={"env": env, "default": default, "parse": parse, "doc": doc, "group": group})
