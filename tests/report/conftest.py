"""Shared by the report's tests: the catalogue keys the templates and the code name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import loralab.report

REPORT = Path(loralab.report.__file__).parent
# t("key", ...) or plain("key", ...) with a literal key, in a template or in the code
NAMED = re.compile(r"""\b(?:t|plain)\(\s*["']([A-Za-z0-9_]+)["']""")


@pytest.fixture(scope="session")
def named_keys() -> dict[str, list[str]]:
    """Every literal key named in ``report/templates/*.j2`` and ``report/*.py``, with the
    files that name it (keys built at run time are seen by rendering a page)."""
    found: dict[str, list[str]] = {}
    for path in sorted([*REPORT.glob("templates/*.j2"), *REPORT.glob("*.py")]):
        for key in NAMED.findall(path.read_text(encoding="utf-8")):
            found.setdefault(key, []).append(path.name)
    return found
