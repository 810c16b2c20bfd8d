"""The docs stay true: short front doors, live links, runnable examples, names that exist.

* README.md and README.zh-CN.md are front doors (at most ``MAX_README_LINES`` lines) with the
  same ``## `` sections, and the Chinese one shows the same code (comments aside);
* every relative link in README*.md and docs/**/*.md points at a file that exists, and an
  ``#anchor`` into a markdown page at one of its headings (GitHub's slugs);
* every ```` ```python ```` block of README.md runs (one subprocess, a temp folder each;
  ```` ```python no-run ```` marks an example shown but not run, e.g. minutes of training);
* every ``loralab.x.y`` named in backticks, and every ``from loralab... import ...`` of a
  python block, resolves by import; every CLI command and flag is on docs/cli.md;
* the same for the words around the code: every ``loralab.x.y`` in a docstring or comment of
  src/loralab, benchmarks/, examples/, tests/ (and the notebook's text), every Sphinx role
  (``:func:`name```, resolved as Sphinx does: the module, its package, then absolute), every
  ``pkg.name`` in a page's backticks whose head is a loralab subpackage, and every file path
  in backticks (``lora/linear.py``, ``tests/x.py::test_name``) names what exists; every
  ``--flag`` after a ``loralab CMD`` in the pages is one of CMD's flags. What cannot resolve
  on purpose is in :data:`UNRESOLVABLE`, each with its reason.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import io
import json
import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_ZH = ROOT / "README.zh-CN.md"
READMES = [README, README_ZH]
DOCS = sorted((ROOT / "docs").rglob("*.md"))
PAGES = READMES + DOCS
MAX_README_LINES = 320

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
DOTTED = re.compile(r"(?<![\w./-])loralab(?:\.[A-Za-z_]\w*)+")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _split(text: str) -> tuple[list[str], list[tuple[str, int, str]]]:
    """(prose lines, with fenced blocks blanked; the blocks as (info, first line, body))."""
    prose: list[str] = []
    blocks: list[tuple[str, int, str]] = []
    fence: str | None = None
    info, start, body = "", 0, []
    for n, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if fence is None and m:
            fence, info, start, body = m.group(1), m.group(2).strip(), n + 1, []
            prose.append("")
        elif fence is not None and m and m.group(1).startswith(fence) and not m.group(2).strip():
            blocks.append((info, start, "\n".join(body) + "\n"))
            fence = None
            prose.append("")
        elif fence is not None:
            body.append(line)
            prose.append("")
        else:
            prose.append(line)
    assert fence is None, "a fenced block is never closed"
    return prose, blocks


def _page(path: Path) -> tuple[list[str], list[tuple[str, int, str]]]:
    return _split(path.read_text(encoding="utf-8"))


def _sections(path: Path) -> list[str]:
    return [line for line in _page(path)[0] if line.startswith("## ")]


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: rendered text, lower case, punctuation dropped,
    spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)   # a link shows its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _page(path)[0]:
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = _slug(m.group(1))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            out.add(slug if n == 0 else f"{slug}-{n}")
    return out


# (a) short front doors that mirror each other ------------------------------------------------


@pytest.mark.parametrize("path", READMES, ids=_rel)
def test_readme_is_a_front_door(path):
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_README_LINES, f"{_rel(path)} has {n} lines; move detail into docs/"


def test_readmes_have_the_same_sections():
    en, zh = _sections(README), _sections(README_ZH)
    assert len(en) >= 5, en
    assert len(en) == len(zh), f"README.md: {en}\nREADME.zh-CN.md: {zh}"


def _code_only(src: str) -> list[str]:
    """The code of a python block without its comments and blank lines."""
    lines = src.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            row, col = tok.start
            lines[row - 1] = lines[row - 1][:col]
    return [line.rstrip() for line in lines if line.strip()]


def test_chinese_readme_shows_the_same_code():
    def code(path: Path) -> list[list[str]]:
        return [_code_only(body) for info, _, body in _page(path)[1]
                if info.split()[:1] == ["python"]]

    assert code(README_ZH) == code(README)


# (b) links ------------------------------------------------------------------------------------


def _links(path: Path) -> list[tuple[int, str]]:
    out = []
    for n, line in enumerate(_page(path)[0], 1):
        for m in LINK.finditer(CODE_SPAN.sub("", line)):
            out.append((n, m.group(1)))
    return out


def test_the_link_checker_sees_links():
    prose = ["see [a](docs/a.md#x), ![b](img/b.png) and `[c](not/a/link)`", "```", "[d](e)"]
    found = [m.group(1) for line in prose for m in LINK.finditer(CODE_SPAN.sub("", line))]
    assert found == ["docs/a.md#x", "img/b.png", "e"]
    assert _split("\n".join(prose) + "\n```\n")[0][2] == ""
    assert _slug("The seed's demo: what it *shows*") == "the-seeds-demo-what-it-shows"
    assert _slug("`loralab svd`: the seed's random BA") == "loralab-svd-the-seeds-random-ba"
    assert _slug("种子演示：它展示了什么") == "种子演示它展示了什么"


@pytest.mark.parametrize("path", PAGES, ids=_rel)
def test_relative_links_point_at_files_and_headings(path):
    bad = []
    for n, target in _links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):     # http:, https:, mailto:
            continue
        file, _, anchor = unquote(target).partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            bad.append(f"line {n}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"line {n}: {target} (no heading #{anchor} in {_rel(dest)})")
    assert not bad, f"{_rel(path)}:\n" + "\n".join(bad)


# (c) the README's examples run --------------------------------------------------------------

DRIVER = r"""
import json, os, sys, traceback
failed = []
for i, (start, code) in enumerate(json.load(open(sys.argv[1], encoding="utf-8"))):
    os.makedirs(f"block{i}")
    os.chdir(f"block{i}")
    try:
        exec(compile("\n" * (start - 1) + code, "README.md", "exec"), {"__name__": "__main__"})
    except BaseException:
        failed.append(f"the python block at README.md:{start} failed:\n"
                      + traceback.format_exc(limit=-4))
    finally:
        os.chdir("..")
sys.stderr.write("\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_readme_python_examples_run(tmp_path):
    blocks = [(start, body) for info, start, body in _page(README)[1]
              if info.split() == ["python"]]
    assert blocks, "README.md shows no python example"
    (tmp_path / "blocks.json").write_text(json.dumps(blocks), encoding="utf-8")
    (tmp_path / "driver.py").write_text(DRIVER, encoding="utf-8")
    env = {**os.environ, "MPLBACKEND": "Agg", "LORALAB_CACHE": str(tmp_path / "cache"),
           "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "driver.py", "blocks.json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-6000:] or proc.stdout[-3000:]


# (d) names that exist -----------------------------------------------------------------------


def _resolve(name: str) -> None:
    """Import the longest module prefix of ``name``, then walk the rest as attributes."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        module = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module.startswith(exc.name):
                continue
            raise
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return
    raise ModuleNotFoundError(name)


def _named_in_backticks(path: Path) -> set[str]:
    out = set()
    for line in _page(path)[0]:
        for span in CODE_SPAN.finditer(line):
            out.update(m.group(0) for m in DOTTED.finditer(span.group(2)))
    return out


def _imported_in_examples(path: Path) -> set[str]:
    out = set()
    for info, _, body in _page(path)[1]:
        if info.split()[:1] != ["python"]:
            continue
        for node in ast.walk(ast.parse(body)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("loralab"):
                out.update(f"{node.module}.{a.name}" for a in node.names if a.name != "*")
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names if a.name.startswith("loralab"))
    return out


def test_the_name_finder_sees_names():
    assert DOTTED.findall("loralab.lora.LoRALinear(...) and src/loralab/x.py") == [
        "loralab.lora.LoRALinear"]
    _resolve("loralab.lm.train.train")
    with pytest.raises((ImportError, AttributeError)):
        _resolve("loralab.lora.NoSuchThing")


@pytest.mark.parametrize("path", PAGES, ids=_rel)
def test_dotted_names_resolve(path):
    bad = []
    for name in sorted(_named_in_backticks(path) | _imported_in_examples(path)):
        try:
            _resolve(name)
        except (ImportError, AttributeError) as exc:
            bad.append(f"{name}: {type(exc).__name__}: {exc}")
    assert not bad, f"{_rel(path)} names what does not exist:\n" + "\n".join(bad)


def test_every_cli_command_and_flag_is_documented():
    from loralab.cli import COMMANDS, build_parser

    cli_doc = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    readmes = [path.read_text(encoding="utf-8") for path in READMES]
    sub = next(a for a in build_parser()._actions if a.choices and set(COMMANDS) <= set(a.choices))
    missing = []
    for name in COMMANDS:
        if not all(f"| `loralab {name}` |" in text for text in readmes):
            missing.append(f"loralab {name} (a row of both READMEs' CLI tables)")
        if not re.search(rf"^#{{2,3}} `loralab {name}`$", cli_doc, re.M):
            missing.append(f"loralab {name} (a heading of docs/cli.md)")
        for action in sub.choices[name]._actions:
            missing += [f"loralab {name} {opt}" for opt in action.option_strings
                        if opt.startswith("--") and opt != "--help" and opt not in cli_doc]
    assert not missing, "not documented:\n" + "\n".join(missing)


def test_cli_help_blocks_are_the_parsers_help(monkeypatch):
    """Each ```text block of docs/cli.md that starts ``usage: loralab [CMD]`` is that parser's
    ``--help`` at 100 columns, so a flag or a default changed in the code shows on the page."""
    from loralab.cli import COMMANDS, build_parser

    monkeypatch.setenv("COLUMNS", "100")
    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and set(COMMANDS) <= set(a.choices))
    helps = {"": parser.format_help()} | {n: sub.choices[n].format_help() for n in COMMANDS}
    cli_doc = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```text\n(usage: loralab(?: (\w+))?[^\n]*\n.*?)\n```", cli_doc, re.S)
    assert sorted(name for _, name in blocks) == sorted(helps)
    stale = [name or "loralab" for text, name in blocks if text != helps[name].rstrip("\n")]
    assert not stale, (f"docs/cli.md's help of {', '.join(stale)} differs from the parser's "
                       "(paste `COLUMNS=100 loralab CMD --help`)")


# (e) the words around the code: docstrings, comments, paths and flags ------------------------

SRC = ROOT / "src" / "loralab"
# Words that name something on purpose unresolvable, each with its reason (kept short: a
# stale entry, one that now resolves or is named nowhere, fails test_unresolvable_is_needed).
UNRESOLVABLE: dict[str, str] = {}
ROLE = re.compile(r":(?:py:)?(mod|func|class|meth|attr|data|obj|exc):`(?:[^`<]*<)?([~.\w]+?)"
                  r"(?:\(\))?>?`")
# a file path in backticks: `lora/linear.py`, `src/loralab/cli/main.py`, ``tests/conftest.py``
# (a bare name: a python file; files a run writes, ``results.md``, are not checked)
PATH = re.compile(r"^(?:(?:\.{0,2}/)?(?:[\w.-]+/)+[\w-]+\.(?:py|md|toml|ipynb|j2)|[\w-]+\.py)$")
# a dotted name in backticks whose head is a loralab subpackage: `lm.train.train`
SUBPACKAGES = sorted(p.name for p in SRC.iterdir()
                     if p.is_dir() and (p / "__init__.py").is_file()) + sorted(
    p.stem for p in SRC.glob("*.py") if not p.stem.startswith("_"))
RELATIVE = re.compile(rf"^(?:{'|'.join(SUBPACKAGES)})(?:\.[A-Za-z_]\w*)+$")
FILE_SUFFIXES = {"py", "md", "toml", "json", "html", "png", "txt", "j2", "ipynb", "npy",
                 "safetensors", "jsonl", "csv", "pdf", "svg", "sh", "gguf"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _python_words(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every docstring and comment of a python file."""
    src = path.read_text(encoding="utf-8")
    out = []
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                out.append((body[0].lineno, body[0].value.value))
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            out.append((tok.start[0], tok.string))
    return out


def _notebook_words(path: Path) -> list[tuple[int, str]]:
    """(cell number, text) of every markdown cell, and the comments of the code cells."""
    out = []
    for n, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"], 1):
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            out.append((n, text))
        else:
            out += [(n, line) for line in text.splitlines() if line.lstrip().startswith("#")]
    return out


# and the tests' words (this file excepted: it names what does not exist on purpose)
PY_FILES = sorted(SRC.rglob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py")) + sorted(
    (ROOT / "examples").glob("*.py")) + [ROOT / "lora_rank_demo.py"] + sorted(
    p for p in (ROOT / "tests").rglob("*.py") if p != Path(__file__).resolve())
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _words(path: Path) -> list[tuple[int, str]]:
    return _notebook_words(path) if path.suffix == ".ipynb" else _python_words(path)


def _installed(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name.split(".")[0]) is not None
    except (ImportError, ValueError):
        return False


@functools.cache
def _resolves(name: str) -> bool:
    try:
        _resolve(name)
    except (ImportError, AttributeError):
        return False
    return True


def _top_level_names(path: Path) -> set[str]:
    """What a script outside the package defines or imports at its top level."""
    out = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            out.update(t.id for t in targets if isinstance(t, ast.Name))
    return out


@functools.cache
def _imports(module: str) -> dict[str, list[str]]:
    """What ``module`` imports anywhere, ``TYPE_CHECKING`` blocks included: local name ->
    the dotted names it stands for (``from .fit import FitResult``: ``FitResult`` ->
    ``loralab.lowrank.fit.FitResult``)."""
    file = SRC.parent.joinpath(*module.split("."))
    file = file / "__init__.py" if file.is_dir() else file.with_suffix(".py")
    package = module.split(".")[:-1] if file.name != "__init__.py" else module.split(".")
    out: dict[str, list[str]] = {}
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            source = ".".join([*base, *([node.module] if node.module else [])])
            for a in node.names:
                out.setdefault(a.asname or a.name, []).append(f"{source}.{a.name}")
    return out


def _imported_as(module: str, name: str) -> list[str]:
    """``name`` through what ``module`` imports: ``FitResult.x`` -> ``…fit.FitResult.x``."""
    head, _, rest = name.partition(".")
    return [".".join(filter(None, (full, rest))) for full in _imports(module).get(head, [])]


def _a_class_has(module: str, name: str) -> bool:
    """A class defined in ``module`` has ``name``: an attribute, a method or a field."""
    import dataclasses

    mod = importlib.import_module(module)
    return any(hasattr(cls, name) or name in getattr(cls, "__annotations__", {})
               or (dataclasses.is_dataclass(cls) and name in {f.name for f in
                                                              dataclasses.fields(cls)})
               for cls in vars(mod).values()
               if isinstance(cls, type) and cls.__module__ == module)


def _role_resolves(role: str, target: str, module: str | None,
                   local: frozenset[str] = frozenset()) -> bool:
    """Sphinx's lookup of ``:role:`target``` written in ``module``: the name in the module,
    in its package, in ``loralab``, then as an absolute name; a method or attribute also on
    any class of the module. A name in a package that is not installed (``bitsandbytes.nn``) is
    not checked."""
    name = target.lstrip("~").lstrip(".")
    head = name.split(".")[0]
    if hasattr(builtins, head) or head in local:       # local: a script's own names
        return True
    tries = [name]
    if module is not None:
        package = module if (SRC / Path(*module.split(".")[1:]) / "__init__.py").is_file() \
            else module.rpartition(".")[0]
        tries = [f"{module}.{name}", f"{package}.{name}", f"loralab.{name}", name]
        tries += _imported_as(module, name)
        if role in ("meth", "attr") and "." not in name and _a_class_has(module, name):
            return True
    if any(_resolves(t) for t in tries):
        return True
    return "." in name and head.islower() and head != "loralab" and not _installed(head)


def _paths_resolve(path: str, here: Path) -> bool:
    """A path in backticks exists: from the repository, from src/loralab, from the folder of
    the page or module; a bare ``name.py`` anywhere in the repository's code."""
    bases = [ROOT, SRC, here]
    if "/" not in path:
        return any(True for d in ("src", "tests", "benchmarks", "examples", "notebooks", "docs")
                   for _ in (ROOT / d).rglob(path)) or (ROOT / path).exists()
    return any((base / path).exists() for base in bases)


def _defines(path: str, name: str) -> bool:
    """``path`` (from the repository's root) defines a function ``name``."""
    file = ROOT / path
    return file.is_file() and re.search(rf"^\s*def {name}\(", file.read_text(encoding="utf-8"),
                                        re.M) is not None


def _stale_in(text: str, rel: str, first: int, module: str | None, here: Path,
              local: frozenset[str] = frozenset()) -> list[str]:
    """``rel:line: what`` for each name in ``text`` (its first line is ``first``) that does
    not exist; ``module``: the loralab module the text is in, ``local``: the names of the
    script it is in (for Sphinx roles)."""
    bad: list[tuple[int, str]] = []
    for m in ROLE.finditer(text):
        if not _role_resolves(m.group(1), m.group(2), module, local):
            bad.append((m.start(), m.group(0)))
    plain = ROLE.sub(lambda m: " " * len(m.group(0)), text)     # a role is reported once
    for m in DOTTED.finditer(plain):
        if m.group(0) not in UNRESOLVABLE and not _resolves(m.group(0)):
            bad.append((m.start(), m.group(0)))
    for m in CODE_SPAN.finditer(text):
        span = m.group(2).strip()
        path, _, test = span.partition("::")           # tests/x.py::test_name: the test too
        if span in UNRESOLVABLE:
            continue
        if PATH.match(path) and not _paths_resolve(path, here):
            bad.append((m.start(), f"{path} (no such file)"))
        elif PATH.match(path) and re.fullmatch(r"\w+", test) and not _defines(path, test):
            bad.append((m.start(), f"{span} (no such test)"))
        elif RELATIVE.match(span) and span.rsplit(".", 1)[1] not in FILE_SUFFIXES \
                and not _resolves(f"loralab.{span}"):
            bad.append((m.start(), f"{span} (no loralab.{span})"))
    return [f"{rel}:{first + text.count(chr(10), 0, at)}: {what}" for at, what in sorted(bad)]


def _stale(path: Path) -> list[str]:
    """What the words of ``path`` name that does not exist (``file:line: name``)."""
    rel = _rel(path) if ROOT in path.parents else path.name
    if path.suffix == ".md":
        return [b for n, line in enumerate(_page(path)[0], 1)
                for b in _stale_in(line, rel, n, None, path.parent)]
    module = _module_name(path) if SRC in path.parents else None
    local = frozenset() if module or path.suffix != ".py" else frozenset(_top_level_names(path))
    return [b for n, text in _words(path)
            for b in _stale_in(text, rel, n, module, path.parent, local)]


def test_the_stale_word_finder_sees_stale_words(tmp_path):
    bad = _stale_in(
        "Pretrain a :class:`~loralab.tinylm.TinyLM` (:mod:`loralab.lm.corpus`), see\n"
        ":func:`train`, :attr:`TrainConfig.lr`, :class:`markupsafe.Markup`,\n"
        ":class:`nosuchpkg.Thing`, :class:`Thing.x`, loralab.finetune_analysis;\n"
        "``lora/linear.py``, ``lora/nosuch.py``, ``lm.train.train``, ``lm.nosuch``,\n"
        "``report.html``, ``a.md``, ``tests/test_docs.py::test_nothing``",
        "x.py", 10, "loralab.lm.train", SRC / "lm")
    assert bad == [
        "x.py:10: :class:`~loralab.tinylm.TinyLM`", "x.py:12: :class:`Thing.x`",
        "x.py:12: loralab.finetune_analysis",
        "x.py:13: lora/nosuch.py (no such file)", "x.py:13: lm.nosuch (no loralab.lm.nosuch)",
        "x.py:14: tests/test_docs.py::test_nothing (no such test)"]
    assert not _role_resolves("func", "no_such_function", "loralab.lm.train")
    assert _role_resolves("meth", "merge", "loralab.lora.layer")
    assert _role_resolves("attr", "steps", "loralab.lm.train")          # a dataclass field
    assert _role_resolves("class", "Figure", "loralab.plots.demo")      # TYPE_CHECKING import
    page = tmp_path / "p.md"
    page.write_text("`lowrank/sweep.py`\n`loralab.nosuch`\n```\nloralab.x.y\n```\n",
                    encoding="utf-8")
    assert _stale(page) == ["p.md:2: loralab.nosuch"]


@pytest.mark.parametrize("path", PAGES + PY_FILES + NOTEBOOKS, ids=_rel)
def test_words_name_what_exists(path):
    bad = _stale(path)
    assert not bad, "named but not there (fix the words, or add to UNRESOLVABLE with a " \
                    "reason):\n" + "\n".join(bad)


def test_unresolvable_is_needed():
    for name in UNRESOLVABLE:
        assert not _resolves(name), f"{name} resolves now: take it off UNRESOLVABLE"


CLI_LINE = re.compile(r"(?<![\w.-])loralab\s+([a-z]+)\b([^|;&#`]*)")


def _unknown_flags(lines: list[tuple[str, str]]) -> list[str]:
    """``where: loralab CMD --flag`` for each flag written after ``loralab CMD`` in ``lines``
    (``(where, line)`` pairs) that CMD does not have."""
    from loralab.cli import COMMANDS, build_parser

    sub = next(a for a in build_parser()._actions if a.choices and set(COMMANDS) <= set(a.choices))
    bad = []
    for where, line in lines:
        for m in CLI_LINE.finditer(line):
            if m.group(1) not in sub.choices:
                continue
            known = {o for a in sub.choices[m.group(1)]._actions for o in a.option_strings}
            bad += [f"{where}: loralab {m.group(1)} {flag}"
                    for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", m.group(2))
                    if flag not in known]
    return bad


def test_the_flag_finder_sees_flags():
    lines = [("a", "run `loralab svd --ranks 2,4 --no-such` then"),
             ("b", "loralab fit --steps 10 | grep --color x"), ("c", "loralab nosuchcmd --x")]
    assert _unknown_flags(lines) == ["a: loralab svd --no-such"]


def test_flags_after_a_command_are_its_flags():
    lines = []
    for path in PAGES:
        prose, blocks = _page(path)
        lines += [(f"{_rel(path)}:{n}", line) for n, line in enumerate(prose, 1)]
        lines += [(f"{_rel(path)}:{start + i}", line) for info, start, body in blocks
                  if info.split()[:1] in ([], ["bash"], ["sh"], ["console"], ["text"])
                  for i, line in enumerate(body.splitlines())]
    bad = _unknown_flags(lines)
    assert not bad, "flags that the command does not have:\n" + "\n".join(bad)
