"""No credential and no weak default secret in any file git tracks.

Secrets are generated at run time (Airflow's passwords, JWT secret and Fernet key under
DATA_DIR/airflow, owner-only) or required from the environment (docker-compose.yml stops
with a message when AIRFLOW_JWT_SECRET or AIRFLOW_DB_PASSWORD is unset). This scan keeps it
that way; tests/integration/test_security.py checks the generated files' modes.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from volpipe.config import PROJECT_ROOT

PATTERNS = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "JWT": re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\."),
    "weak default": re.compile(r"change-?me|changeit|\bhunter2\b", re.I),
    "hard-coded password": re.compile(
        r"(password|passwd|secret|token|api_?key)[\"']?\s*[:=]\s*"
        r"([\"']({weak})[\"']|({weak})\s*$)".format(weak=r"admin|airflow|password|secret|root|test|1234\w*"),
        re.I,
    ),
    "credentials in a URL": re.compile(r"://[^/\s:@$]+:(?!\$\{)[^/\s@]+@"),
    "fallback for a secret": re.compile(r"\$\{\w*(SECRET|PASSWORD|TOKEN|KEY)\w*:?-", re.I),
    "Fernet or JWT secret value": re.compile(
        r"(fernet_key|jwt_secret|secret_key)\s*[:=]\s*[\"']?[A-Za-z0-9+/=_-]{16,}", re.I
    ),
}
# This file spells the patterns out; everything else must be clean.
SELF = "tests/unit/test_no_secrets.py"


def _tracked_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True)
    return [name for name in listed.stdout.decode().split("\0") if name and name != SELF]


def test_the_tree_is_a_git_checkout_with_files_to_scan():
    assert len(_tracked_files()) > 50


@pytest.mark.parametrize("kind", sorted(PATTERNS))
def test_no_tracked_file_holds_a_secret_or_a_weak_default(kind):
    found = []
    for name in _tracked_files():
        path = PROJECT_ROOT / name
        if not path.is_file():  # deleted in the work tree, not yet committed
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if PATTERNS[kind].search(line):
                found.append(f"{name}:{number}: {line.strip()[:120]}")
    assert not found, f"{kind}:\n" + "\n".join(found)


@pytest.mark.parametrize(
    "line",
    [
        "AIRFLOW__API_AUTH__JWT_SECRET: ${AIRFLOW_JWT_SECRET:-change-me}",
        "POSTGRES_PASSWORD: airflow",
        "sql_alchemy_conn = postgresql://airflow:airflow@db/airflow",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
        'token = "ghp_' + "a" * 36 + '"',
        "fernet_key = " + "Zm9vYmFyYmF6cXV4cXV1eA" * 2,
    ],
)
def test_the_scan_catches_what_it_is_for(line):
    assert any(pattern.search(line) for pattern in PATTERNS.values()), line
