"""Every file, module and `make` target that README.md and docs/ name exists.

Docs go stale when code moves: a page that names a module that is gone sends a newcomer
looking for nothing. Only code spans and code blocks are read (prose may say "make them").
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from volpipe.config import PROJECT_ROOT

PAGES = sorted([PROJECT_ROOT / "README.md", *(PROJECT_ROOT / "docs").glob("*.md")])
TOP_FOLDERS = ("volpipe", "ingest", "spark_jobs", "dags", "bench", "tests", "tools", "jvm", "docs")
# Outputs of commands, named by the docs that say what writes them; not in a clean checkout.
GENERATED = {"bench/RESULTS-quick.md", "bench/logs/"}
PATH = re.compile(rf"(?<![\w/.$-])((?:{'|'.join(TOP_FOLDERS)})/[\w./*-]*[\w/*])")
MODULE = re.compile(r"python -m ([\w.]+)")
MAKE_TARGET = re.compile(r"\bmake ([a-z][\w-]*)")


def _code(page: Path) -> str:
    """The code spans and code blocks of a Markdown page, one per line."""
    text = page.read_text()
    blocks = re.findall(r"```.*?\n(.*?)```", text, flags=re.S)
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    return "\n".join([*blocks, *spans])


def _exists(reference: str) -> bool:
    """A path (globs allowed), or ``path/module.attribute`` naming a module's attribute."""
    if reference in GENERATED or any(PROJECT_ROOT.glob(reference)):
        return True
    module, _, attribute = reference.rpartition(".")
    source = PROJECT_ROOT / f"{module}.py"
    return (
        bool(attribute)
        and source.is_file()
        and re.search(rf"^(def|class) {attribute}\b|^{attribute} =", source.read_text(), flags=re.M) is not None
    )


def _module_exists(name: str) -> bool:
    parts = name.split(".")
    if parts[0] not in ("volpipe", "ingest", "spark_jobs"):
        return True  # a third-party tool (pytest, pip): not ours to check
    base = PROJECT_ROOT.joinpath(*parts)
    return base.with_suffix(".py").is_file() or (base / "__main__.py").is_file()


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_path_module_and_make_target_a_page_names_exists(page):
    code = _code(page)
    targets = set(re.findall(r"^([a-z][\w-]*):", (PROJECT_ROOT / "Makefile").read_text(), flags=re.M))
    missing = sorted(
        {ref for ref in PATH.findall(code) if not _exists(ref.rstrip("."))}
        | {f"python -m {name}" for name in MODULE.findall(code) if not _module_exists(name)}
        | {f"make {name}" for name in MAKE_TARGET.findall(code) if name not in targets}
    )
    assert missing == [], f"{page.name} names what does not exist"
