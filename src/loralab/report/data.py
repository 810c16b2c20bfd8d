"""The report's types: what to build (:class:`ReportConfig`) and what the page shows
(:class:`ReportData`, :class:`Extension`). Nothing above :mod:`loralab.results` (the presets)
is imported at run time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..errors import LoralabError, check_choice
from ..results.presets import PRESETS, Preset

if TYPE_CHECKING:
    from ..results.demo import DemoResult
    from .slider import SliderData

__all__ = ["LANGS", "REPORT_FILES", "Extension", "ReportConfig", "ReportData"]

Lang = Literal["en", "zh"]
LANGS: tuple[str, ...] = ("en", "zh")
# Files a report folder may hold; any other file makes build_report refuse to replace it.
REPORT_FILES: frozenset[str] = frozenset({"index.html"})


@dataclass
class ReportConfig:
    """What to build.

    Attributes:
        preset: ``"quick"`` (small analyses, the fine-tuning experiment's quick preset) or
            ``"default"``; the seed demo always uses the seed's own configuration.
        lang: ``"en"`` or ``"zh"``: the whole page, and the figure labels when a CJK font is
            installed (otherwise English labels and a one-line hint).
        seed: random seed of every part.
        hidden_size: ``d`` of the demo and of the rank explorer's matrices (default: the
            seed's 512; tests use a smaller one).
        analyses: run the low-rank analyses (chapter 7.1–7.4).
        finetune: run the fine-tuning experiment (chapter 7.5).
        finetune_dir: show the results of an earlier ``loralab finetune --out DIR`` in
            chapter 7.5 instead of running the experiment (any preset or ``--methods``).
        study_dirs: earlier ``loralab finetune --study NAME --out DIR`` folders whose
            studies (table, figure, verdicts) chapter 7.5 shows too.
    """

    preset: Preset = "default"
    lang: Lang = "en"
    seed: int = 42
    hidden_size: int = 512
    analyses: bool = True
    finetune: bool = True
    finetune_dir: str | None = None
    study_dirs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_choice("preset", self.preset, PRESETS)
        check_choice("language", self.lang, LANGS)
        d = self.hidden_size
        if isinstance(d, bool) or not isinstance(d, int) or not 2 <= d <= 4096:
            raise LoralabError(f"hidden_size={d!r} is not allowed; it must be an integer "
                               "in 2..4096")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise LoralabError(f"seed={self.seed!r} is not allowed; it must be an integer")


@dataclass
class Extension:
    """One extension's content, already in the page's language.

    Attributes:
        key: ``"svd"``, ``"spectrum"``, ``"heatmap"``, ``"fit"`` or ``"finetune"``.
        figures: ``(png bytes, caption)`` pairs; a caption is trusted HTML (the catalogue's).
        html: further trusted HTML shown before the figures (empty for loralab's own).
        missing: why the extension is absent (then ``figures`` is empty), else ``None``;
            plain text (escaped on the page) unless it is :class:`markupsafe.Markup`.
        values: what the chapter's template ``templates/ext_<key>.html.j2`` shows (numbers
            already formatted); ``None``: no template part, only ``html`` and the figures.
    """

    key: str
    figures: list[tuple[bytes, str]] = field(default_factory=list)
    html: str = ""
    missing: str | None = None
    values: dict[str, Any] | None = None


@dataclass
class ReportData:
    """Everything :func:`render_report` needs; :func:`collect_report` fills it.

    ``slider_extra`` maps a rank to extra lines for the rank explorer (LoRA's validation
    loss at that rank) and ``headline`` is the fine-tuning result in one line, both already
    formatted as trusted HTML; ``results`` keeps the analyses' and the experiment's own
    result objects (``"svd"``, ``"spectrum"``, ``"fit"``, ``"finetune"``).
    """

    config: ReportConfig
    demo: DemoResult
    demo_png: bytes
    slider: SliderData
    extensions: dict[str, Extension] = field(default_factory=dict)
    slider_extra: dict[int, dict[str, str]] = field(default_factory=dict)
    cjk_font: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    built: str = ""
    headline: str = ""            # the fine-tuning result in one line, for the overview
    results: dict[str, object] = field(default_factory=dict)   # raw results, by chapter
