"""What each chapter's template shows: this run's numbers, formatted, one function per chapter.

The templates (``templates/<chapter>.html.j2``) hold the markup and take the words from the
catalogues; these functions only compute and format. Values are plain strings (the template
escapes them) unless they are trusted HTML, which is passed as :class:`markupsafe.Markup`:
catalogue texts (already ``Markup``), ``<img>`` tags, the rank explorer's data.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from .text import t

if TYPE_CHECKING:
    from .data import ReportData

__all__ = ["EXT_ORDER", "api", "explorer", "extensions", "faq", "flow", "math", "overview",
           "running"]

# The extension chapters in page order, with their titles' keys.
EXT_ORDER = (("svd", "ext_svd_h"), ("spectrum", "ext_spec_h"), ("heatmap", "ext_heat_h"),
             ("fit", "ext_fit_h"), ("finetune", "ext_ft_h"), ("merge", "ext_merge_h"))

Figure = Callable[[bytes, str], dict[str, Markup]]     # (png, caption) -> numbered figure
Image = Callable[..., Markup]                           # (png, alt, **attrs) -> <img>


def _num(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}"


def _pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


def _ranks(ranks: tuple[int, ...] | list[int]) -> str:
    return "(" + ", ".join(str(r) for r in ranks) + ")"


def overview(data: ReportData) -> dict[str, Any]:
    """Chapter 1: LoRA's parameter count at this ``d`` and the run in three (or four) lines."""
    demo, sl = data.demo, data.slider
    d, rows = demo.config.hidden_size, demo.rows
    first, last = rows[0], rows[-1]
    k = sl.signal_rank
    struct_k = next((r.struct_relative for r in sl.rows if r.rank >= k),
                    sl.rows[-1].struct_relative)
    return {
        "d": d, "p8": f"{2 * d * 8:,}", "d2": f"{d * d:,}", "pct8": _pct(16 / d, 2),
        "ranks": "{" + ", ".join(str(r.rank) for r in rows) + "}",
        "seed": {"e_first": _num(first.delta_norm), "r_first": first.rank,
                 "e_last": _num(last.delta_norm), "r_last": last.rank,
                 "maxdev": _pct(max(abs(r.delta_norm / r.theory - 1) for r in rows))},
        "opt": {"r_last": last.rank, "opt_last": _pct(last.optimal_relative)},
        "struct": {"k": k, "struct_k": _pct(struct_k), "noise": _pct(sl.noise, 0)},
        "headline": Markup(data.headline) if data.headline else None}


def flow(data: ReportData) -> dict[str, Any]:
    """Chapter 2: the seed's six steps with this run's values, and the code that runs them."""
    demo = data.demo
    cfg = demo.config
    ranks = _ranks(cfg.rank_candidates)
    code = ("from loralab.demo import LoraConfig, simulate_lora, pseudo_code\n\n"
            f"result = simulate_lora(LoraConfig(hidden_size={cfg.hidden_size}, "
            f"rank_candidates={ranks}, alpha={cfg.alpha:g}), seed={demo.seed})\n"
            "pseudo_code()")
    return {"vals": {"d": cfg.hidden_size, "ranks": ranks, "alpha": f"{cfg.alpha:g}",
                       "seed": demo.seed, "w0": _num(demo.w0_norm)}, "code": code}


def _signature(obj: object, name: str) -> str:
    try:
        return f"{name}{inspect.signature(obj)}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return name


def api(data: ReportData) -> dict[str, Any]:
    """Chapter 3: the seed's configuration, its three functions, and the rest of loralab."""
    from .. import demo as demo_mod
    from .api import api_rows

    cfg = data.demo.config
    return {"d": str(cfg.hidden_size), "ranks": _ranks(cfg.rank_candidates),
            "alpha": f"{cfg.alpha:g}", "pseudo": demo_mod.PSEUDO_CODE,
            "sig": {name: _signature(getattr(demo_mod, name), name)
                    for name in ("simulate_lora", "run_demo", "pseudo_code")},
            "more": api_rows(data.config.lang)}


def math(data: ReportData) -> dict[str, Any]:
    """Chapter 4: this run's numbers in the error's expectation and in Eckart–Young."""
    demo = data.demo
    row = next((r for r in demo.rows if r.rank == 8), demo.rows[0])
    last = demo.rows[-1]
    return {"e4": {"r": row.rank, "m": _num(row.delta_norm), "t": _num(row.theory),
                   "s": _num(row.theory_std)},
            "smax": _num(demo.singular_values[0], 2),
            "ey4": {"r": last.rank, "kept": _pct(1 - last.optimal_relative**2),
                    "rel": _pct(last.optimal_relative)}}


def running(data: ReportData, figure: Figure) -> dict[str, Any]:
    """Chapter 5: the commands, the seed demo's table and its figure."""
    cfg = data.demo.config
    cmds = ("python lora_rank_demo.py\n"
            f"loralab demo --hidden-size {cfg.hidden_size} --ranks "
            f"{','.join(str(r) for r in cfg.rank_candidates)} --alpha {cfg.alpha:g} "
            f"--seed {data.demo.seed}\n"
            f"loralab report --preset {data.config.preset} --lang {data.config.lang} "
            "--out report")
    rows = [{"rank": r.rank, "seed": _num(r.delta_norm, 2),
             "theory": f"{_num(r.theory)} ± {_num(r.theory_std)}",
             "optimal": f"{_num(r.optimal_error)} ({_pct(r.optimal_relative)})",
             "params": f"{r.trainable_params:,} ({_pct(r.trainable_params / r.full_params, 2)})"}
            for r in data.demo.rows]
    return {"cmds": cmds, "rows": rows,
            "figure": figure(data.demo_png, t("run_fig", data.config.lang)),
            "table": {"seed": data.demo.seed, "d": cfg.hidden_size, "alpha": f"{cfg.alpha:g}"}}


def explorer(data: ReportData, image: Image) -> dict[str, Any]:
    """The rank explorer: one line set and one heatmap per rank, the page's JSON for the
    slider script, and the rank shown first (8, the seed's middle rank)."""
    lang, sl = data.config.lang, data.slider
    rows = []
    for r in sl.rows:
        params = t("sl_params", lang, p=f"{r.trainable_params:,}",
                   pct=_pct(r.trainable_params / r.full_params, 2), full=f"{r.full_params:,}")
        if r.trainable_params > r.full_params:
            params += t("sl_params_more", lang)
        row = {"rank": f"r = {r.rank}", "rank_value": r.rank, "params": params,
               "seed": t("sl_seed", lang, m=_num(r.seed_delta_norm), t=_num(r.theory)),
               "gauss": t("sl_gauss", lang, e=_num(r.gauss_error), rel=_pct(r.gauss_relative)),
               "struct": t("sl_struct", lang, rel=_pct(r.struct_relative))}
        row.update({k: Markup(v) for k, v in data.slider_extra.get(r.rank, {}).items()})
        rows.append(row)
    fields = ["params", "seed", "gauss", "struct"] + sorted(
        {k for extra in data.slider_extra.values() for k in extra})
    start = next((i for i, r in enumerate(sl.rows) if r.rank == 8), 0)
    payload = json.dumps({"rows": rows}, ensure_ascii=False).replace("</", "<\\/")
    return {"k": sl.signal_rank, "crop": sl.crop, "d": sl.hidden_size,
            "last": len(sl.rows) - 1, "start": start, "rank": rows[start]["rank"],
            "ticks": [r.rank for r in sl.rows],
            "nums": [(k, rows[start].get(k, "")) for k in fields],
            "imgs": [image(r.png, t("sl_alt", lang, r=r.rank), index=i, hidden=i != start)
                     for i, r in enumerate(sl.rows)],
            "payload": Markup(payload)}


def faq(data: ReportData) -> dict[str, Any]:
    """Chapter 6: the answers' numbers (the seed curve's scatter, a matrix's memory)."""
    demo = data.demo
    d = demo.config.hidden_size
    return {"sd": _pct(max(r.theory_std / r.theory for r in demo.rows)),
            "mib": f"{4 * d * d / 2**20:g}", "d": d}


def extensions(data: ReportData, figure: Figure) -> list[dict[str, Any]]:
    """Chapter 7: each extension in page order, present (its template's values, numbered
    figures) or missing (why)."""
    out = []
    for key, title in EXT_ORDER:
        ext = data.extensions.get(key)
        view: dict[str, Any] = {"key": key, "title": title, "v": None, "html": Markup(""),
                                "figures": [], "missing": key if ext is None else ext.missing}
        if not view["missing"]:
            view.update(v=ext.values, html=Markup(ext.html),
                        figures=[figure(png, caption) for png, caption in ext.figures])
        out.append(view)
    return out
