"""``loralab report``: one self-contained HTML page for the classroom, in English or Chinese.

* :mod:`.data`: :class:`ReportConfig` (what to build), :class:`ReportData` (what it shows);
* :mod:`.build`: :func:`collect_report` (compute), :func:`render_report` (HTML),
  :func:`build_report` (write ``OUT/index.html`` atomically);
* :mod:`.slider` (the rank explorer), :mod:`.extensions` (the analyses and the experiment);
* :mod:`.page` renders ``templates/*.html.j2`` (Jinja2, autoescaped) with the values of
  :mod:`.chapters`; :mod:`.text` looks the words up in ``catalogues/<lang>.toml``;
  :mod:`.mathml` (the formulas), :mod:`.assets` (CSS and JS), :mod:`.api` (the table of
  functions), :mod:`.figure_zh` (Chinese labels inside figures).
"""

from __future__ import annotations

from .build import build_report, check_report_dir, collect_report, render_report, slider_ranks
from .data import LANGS, Extension, ReportConfig, ReportData

__all__ = [
    "LANGS",
    "Extension",
    "ReportConfig",
    "ReportData",
    "build_report",
    "check_report_dir",
    "collect_report",
    "render_report",
    "slider_ranks",
]
