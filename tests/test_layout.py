"""The test tree stands beside the source tree, so the tests of a module are found by its path.

The rule:

* every subpackage ``src/loralab/<pkg>/`` has a folder ``tests/<pkg>/`` holding at least one
  ``test_*.py`` (one file per module is not required: a file may test a concept that spans
  modules, e.g. ``tests/lora/test_transformers.py``);
* every folder of ``tests/`` is a subpackage's, or one of :data:`CROSS_CUTTING` (with why);
* every ``tests/test_<name>.py`` is a top-level module's (``loralab/<name>.py``) or one of
  :data:`WHOLE_REPO` (checks of the repository, not of one module);
* the packages in :data:`PER_MODULE` have a ``test_<module>.py`` for every module
  (``test_init.py`` for what the package's ``__init__.py`` itself defines).
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "loralab"
TESTS = ROOT / "tests"

CROSS_CUTTING: dict[str, str] = {
    "faults": "what each command does with bad input, a full disk, a Ctrl-C: every layer at once",
}
WHOLE_REPO: dict[str, str] = {
    "architecture": "the import graph and the layer contract of the whole package",
    "docs": "README and docs/ pages, and the words of every module",
    "examples": "the scripts under examples/",
    "layout": "this file: the test tree beside the source tree",
    "notebook": "the notebook under notebooks/",
}
PER_MODULE = ("plots",)


def _subpackages() -> list[str]:
    return sorted(p.name for p in SRC.iterdir() if (p / "__init__.py").is_file())


def _test_folders() -> list[str]:
    return sorted(p.name for p in TESTS.iterdir()
                  if p.is_dir() and not p.name.startswith(("_", ".")))


@pytest.mark.parametrize("pkg", _subpackages())
def test_every_subpackage_has_its_test_folder(pkg):
    folder = TESTS / pkg
    assert folder.is_dir(), f"src/loralab/{pkg}/ has no tests/{pkg}/"
    assert sorted(folder.glob("test_*.py")), f"tests/{pkg}/ holds no test_*.py"


def test_every_test_folder_mirrors_a_subpackage():
    stray = set(_test_folders()) - set(_subpackages()) - set(CROSS_CUTTING)
    assert not stray, (f"tests/{sorted(stray)[0]}/ mirrors no src/loralab/ subpackage; move its "
                       "tests beside the code they test, or list it in CROSS_CUTTING with why")


def test_every_top_level_test_file_mirrors_a_module_or_checks_the_repo():
    modules = {p.stem for p in SRC.glob("*.py")}
    stray = [p.name for p in sorted(TESTS.glob("test_*.py"))
             if p.stem[len("test_"):] not in modules | set(WHOLE_REPO)]
    assert not stray, (f"tests/{stray[0]} names no loralab/<module>.py; move it into the "
                       "folder of the package it tests, or list it in WHOLE_REPO with why")


@pytest.mark.parametrize("pkg", PER_MODULE)
def test_per_module_packages_have_a_test_file_per_module(pkg):
    want = {f"test_{'init' if p.stem == '__init__' else p.stem}.py"
            for p in (SRC / pkg).glob("*.py")}
    have = {p.name for p in (TESTS / pkg).glob("test_*.py")}
    assert not want - have, f"tests/{pkg}/ misses {sorted(want - have)}"
    assert not have - want, f"tests/{pkg}/ has {sorted(have - want)}, named after no module"


def test_the_lists_name_what_exists():
    assert set(CROSS_CUTTING) <= set(_test_folders())
    assert all((TESTS / f"test_{name}.py").is_file() for name in WHOLE_REPO)
    assert set(PER_MODULE) <= set(_subpackages())
