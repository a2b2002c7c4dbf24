"""The direction of imports (docs/architecture.md), read from the source with ``ast``.

- The shared package ``volpipe`` never imports an entrypoint package (``ingest``,
  ``spark_jobs``, ``dags``, ``bench``, ``tests``).
- Its logic never imports its operations subpackage ``volpipe.ops``.
- The pure modules (names, dates, kernel, labels, wire format) import no pyspark, so the
  trainer, the monitor and the DAG files can use them without a JVM.
- DAG files import only the standard library, Airflow and ``volpipe``.
- No entrypoint (benchmarks included) imports the tests: what both need lives in ``volpipe``.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from volpipe.config import PROJECT_ROOT

ENTRYPOINTS = ("ingest", "spark_jobs", "dags", "bench", "tests")
PURE = (
    "volpipe/tables.py",
    "volpipe/dates.py",
    "volpipe/features.py",
    "volpipe/config/*.py",
    "volpipe/errors.py",
    "volpipe/coinbase.py",
    "volpipe/market.py",
    "volpipe/records.py",
    "volpipe/modeling/label.py",
)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at top level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def _top(module: str) -> str:
    return module.split(".")[0]


def _sources(folder: str) -> list[Path]:
    return sorted((PROJECT_ROOT / folder).rglob("*.py"))


def test_the_helper_sees_every_kind_of_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import a.b\nfrom c import d\n\ndef f():\n    from e.f import g\n    import h\nfrom . import x\n")
    assert imported_modules(probe) == {"a.b", "c", "e.f", "h"}


@pytest.mark.parametrize("path", _sources("volpipe"), ids=lambda p: str(p.relative_to(PROJECT_ROOT)))
def test_shared_package_never_imports_an_entrypoint(path):
    assert not {m for m in imported_modules(path) if _top(m) in ENTRYPOINTS}


@pytest.mark.parametrize(
    "path",
    [p for p in _sources("volpipe") if "ops" not in p.relative_to(PROJECT_ROOT).parts],
    ids=lambda p: str(p.relative_to(PROJECT_ROOT)),
)
def test_pipeline_logic_never_imports_operations(path):
    assert not {m for m in imported_modules(path) if m.startswith("volpipe.ops")}


@pytest.mark.parametrize("pattern", PURE)
def test_pure_modules_import_no_spark(pattern):
    paths = sorted(PROJECT_ROOT.glob(pattern))
    assert paths, f"{pattern} names no module"
    spark = {
        str(p.relative_to(PROJECT_ROOT)): m
        for p in paths
        for m in imported_modules(p)
        if _top(m) in ("pyspark", "delta")
    }
    assert not spark


@pytest.mark.parametrize("path", _sources("dags"), ids=lambda p: p.name)
def test_dag_files_import_only_airflow_and_the_shared_package(path):
    allowed = {"airflow", "volpipe", "__future__", *sys.stdlib_module_names}
    assert {m for m in imported_modules(path) if _top(m) not in allowed} == set()


@pytest.mark.parametrize(
    "path",
    [*_sources("bench"), *_sources("ingest"), *_sources("spark_jobs")],
    ids=lambda p: str(p.relative_to(PROJECT_ROOT)),
)
def test_no_entrypoint_imports_the_tests(path):
    assert not {m for m in imported_modules(path) if _top(m) == "tests"}
