"""``loralab report``: one self-contained HTML page for the classroom, in English or Chinese.

The page follows the seed's chapters (overview, flow, classes and functions, math, running
and plots, FAQ, extensions) with this run's numbers: the seed demo, a rank explorer (a plain-JS
slider over per-rank heatmaps and errors computed at build time), the low-rank analyses and the
full-vs-LoRA fine-tuning experiment. Figures are embedded as base64 PNG, CSS and JS are inline,
formulas are MathML: nothing is fetched, and the page opens from ``file://``.

Three steps, each usable alone (tests build small pages from precomputed data):

* :func:`collect_report` computes everything into a :class:`ReportData` (no files);
* :func:`render_report` turns a :class:`ReportData` into the HTML string (no computation);
* :func:`build_report` writes ``OUT/index.html`` through :func:`loralab.fileio.atomic_dir`,
  so ``OUT`` appears only when the page is complete.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import LoralabError
from .data import REPORT_FILES, ReportConfig, ReportData

__all__ = [
    "build_report",
    "check_report_dir",
    "collect_report",
    "render_report",
    "slider_ranks",
]

def slider_ranks(d: int) -> tuple[int, ...]:
    """The rank explorer's stops: 2, 4, 8, … up to ``d``, and ``d`` itself (full rank).

    The seed's ranks (2, 4, 8, 16, 32) come first, in the seed's order, so the random
    updates drawn for them are the seed's own."""
    ranks = [2**k for k in range(1, d.bit_length()) if 2**k <= d]
    if not ranks or ranks[-1] != d:
        ranks.append(d)
    return tuple(ranks)


def _figure_font(lang: str) -> str | None:
    """The CJK font to draw Chinese labels with, or ``None`` (English labels)."""
    if lang != "zh":
        return None
    from .. import plots

    return plots.cjk_font()


def collect_report(config: ReportConfig | None = None, *,
                   on_stage: Callable[[str], None] | None = None,
                   on_steps: Callable[[str, int, int], None] | None = None) -> ReportData:
    """Run the demo, the rank explorer, the analyses and the fine-tuning experiment (as the
    config asks) and draw every figure. Returns the page's data; writes nothing.

    ``on_stage(name)`` is called as each part starts (``"demo"``, ``"slider"``,
    ``"analyses"``, ``"finetune"``); ``on_steps(label, steps, total)`` as fine-tuning
    optimizer steps complete (the CLI shows them as progress)."""
    from ..demo import LoraConfig, run_demo
    from ..plots import png_bytes
    from ..plots.demo import demo_figure
    from ..plots.report import localize_figure
    from ..threads import SMALL_NUMEL, torch_threads
    from .extensions import finetune_extension, lowrank_extensions, merge_extension
    from .figure_zh import FIGURE_ZH
    from .slider import compute_slider

    config = config if config is not None else ReportConfig()
    stage = on_stage or (lambda _name: None)
    font = _figure_font(config.lang)
    seconds: dict[str, float] = {}
    d = config.hidden_size
    # The page's own matrices are small (d ≤ 512): one thread is as fast as two and is not
    # slowed by a busy machine (see loralab.threads). The experiment keeps its own setting.
    with torch_threads(1 if d * d <= SMALL_NUMEL else None):
        stage("demo")
        start = time.perf_counter()
        seed_ranks = tuple(r for r in LoraConfig().rank_candidates if r <= d)
        demo = run_demo(LoraConfig(hidden_size=d, rank_candidates=seed_ranks),
                        seed=config.seed)
        fig = demo_figure(demo)
        if font:
            localize_figure(fig, FIGURE_ZH, font)
        demo_png = png_bytes(fig)
        seconds["demo"] = time.perf_counter() - start

        stage("slider")
        start = time.perf_counter()
        slider = compute_slider(d, slider_ranks(d),
                                seed=config.seed, lang=config.lang, cjk_font=font)
        seconds["slider"] = time.perf_counter() - start
        data = ReportData(config=config, demo=demo, demo_png=demo_png, slider=slider,
                          cjk_font=font, seconds=seconds,
                          built=time.strftime("%Y-%m-%d %H:%M"))
        stage("analyses")
        start = time.perf_counter()
        data.extensions.update(lowrank_extensions(data))
        data.extensions["merge"] = merge_extension(data)
        seconds["analyses"] = time.perf_counter() - start
    stage("finetune")
    start = time.perf_counter()
    data.extensions["finetune"] = finetune_extension(data, on_steps=on_steps)
    seconds["finetune"] = time.perf_counter() - start
    return data


def render_report(data: ReportData) -> str:
    """The complete HTML page (a string) for ``data``; see :mod:`loralab.report.page`."""
    from .page import render_page

    return render_page(data)


GENERATOR = '<meta name="generator" content="loralab report">'


def _is_report(page: Path) -> bool:
    """Whether ``page`` is a loralab report (its head names loralab as the generator)."""
    try:
        with open(page, "rb") as fh:
            return GENERATOR.encode() in fh.read(4096)
    except OSError:
        return False


def check_report_dir(out: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Check ``out`` can receive a report before any work is done.

    ``out`` may be missing (its parent must then exist and be writable) or a folder holding
    only a previous report (it is replaced as a whole): an ``index.html`` whose head says
    loralab generated it; a user's own ``index.html`` is replaced only with ``force``.
    Anything else raises :class:`LoralabError`, so a report never replaces a folder of other
    files."""
    from ..fileio import check_output_dir

    if not str(out).strip():
        raise LoralabError("--out '' is empty; give the report's folder, e.g. --out report")
    path = Path(out)
    parent = path.parent if str(path.parent) else Path(".")
    if path.exists():
        if not path.is_dir():
            raise LoralabError(f"output folder {str(path)!r} exists and is not a folder")
        if path.resolve() == Path.cwd().resolve():
            raise LoralabError(f"output folder {str(path)!r} is the current folder; "
                               "give a new or report-only folder such as 'report'")
        others = sorted(p.name for p in path.iterdir() if p.name not in REPORT_FILES)
        if others:
            raise LoralabError(f"output folder {str(path)!r} holds files that are not a "
                               f"loralab report (e.g. {others[0]!r}); give a new or empty "
                               "folder")
        page = path / "index.html"
        if page.exists() and not force and not _is_report(page):
            raise LoralabError(f"--out {str(path)!r}: its {str(page)!r} exists and is not a "
                               "loralab report; a user's file is never replaced: give a new "
                               "folder, or add --force to replace it")
    check_output_dir(parent)
    return path


def build_report(config: ReportConfig | None = None, out: str | os.PathLike[str] = "report",
                 *, data: ReportData | None = None, force: bool = False) -> Path:
    """Compute (unless ``data`` is given), render and write ``out/index.html`` atomically.

    Returns the path of ``index.html``. ``out`` is checked first (see
    :func:`check_report_dir`); on any error nothing is left behind.
    """
    from ..fileio import atomic_dir, atomic_write_text

    out_path = check_report_dir(out, force=force)
    if data is None:
        data = collect_report(config)
    start = time.perf_counter()
    page = render_report(data)
    data.seconds["render"] = time.perf_counter() - start
    with atomic_dir(out_path) as tmp:
        atomic_write_text(tmp / "index.html", page)
    return out_path / "index.html"
