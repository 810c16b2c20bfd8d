"""The docs stay true: short front doors, live links, runnable examples, names that exist.

* README.md and README.zh-CN.md are front doors (at most ``MAX_README_LINES`` lines) with the
  same ``## `` sections, and the Chinese one shows the same code (comments aside);
* every relative link in README*.md and docs/**/*.md points at a file that exists, and an
  ``#anchor`` into a markdown page at one of its headings (GitHub's slugs);
* every ```` ```python ```` block of README.md runs (one subprocess, a temp folder each;
  ```` ```python no-run ```` marks an example shown but not run, e.g. minutes of training);
* every ``loralab.x.y`` named in backticks, and every ``from loralab... import ...`` of a
  python block, resolves by import; every CLI command and flag is on docs/cli.md.
"""

from __future__ import annotations

import ast
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
