"""HTML assembly of the report: one function per chapter, pure string building.

Every figure is an ``<img>`` with a ``data:image/png;base64`` URI; CSS and JS are inline;
formulas are MathML (:mod:`loralab.report_math`); words come from :mod:`loralab.report_text`.
"""

from __future__ import annotations

import base64
import html
import inspect
import json
import struct
from typing import TYPE_CHECKING

from .text import t

if TYPE_CHECKING:
    from .data import ReportData

__all__ = ["figure_html", "render_page"]


class _Ctx:
    """What every chapter needs: the data, the language, formulas and a figure counter."""

    def __init__(self, data: ReportData) -> None:
        from .mathml import formulas

        self.data, self.lang = data, data.config.lang
        cfg = data.demo.config
        self.f = formulas(cfg.hidden_size, cfg.alpha, self.lang)
        self.n_fig = 0

    def t(self, key: str, **kw: object) -> str:
        return t(key, self.lang, **kw)

    def figure(self, png: bytes, caption: str, alt: str = "") -> str:
        self.n_fig += 1
        return figure_html(png, f"{self.t('fig')} {self.n_fig}. {caption}", alt or caption)


def _png_size(png: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk."""
    return struct.unpack(">II", png[16:24]) if png[:8] == b"\x89PNG\r\n\x1a\n" else (0, 0)


def _img(png: bytes, alt: str, extra: str = "") -> str:
    w, h = _png_size(png)
    src = base64.b64encode(png).decode("ascii")
    return (f'<img src="data:image/png;base64,{src}" width="{w}" height="{h}" '
            f'alt="{html.escape(_plain(alt))}"{extra}>')


def _plain(fragment: str) -> str:
    """Text of an HTML fragment (tags dropped) for alt attributes."""
    import re

    return re.sub(r"<[^>]+>", "", fragment)


def figure_html(png: bytes, caption: str, alt: str) -> str:
    """A ``<figure>`` with the embedded PNG and its caption (caption is HTML)."""
    return f"<figure>{_img(png, alt)}<figcaption>{caption}</figcaption></figure>"


def _code(text: str) -> str:
    return f"<pre><code>{html.escape(text)}</code></pre>"


def _num(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}"


def _pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{title}</h2>{body}</section>'


def _overview(c: _Ctx) -> str:
    demo, sl = c.data.demo, c.data.slider
    d, rows = demo.config.hidden_size, demo.rows
    first, last = rows[0], rows[-1]
    maxdev = max(abs(r.delta_norm / r.theory - 1) for r in rows)
    k = sl.signal_rank
    struct_k = next((r.struct_relative for r in sl.rows if r.rank >= k),
                    sl.rows[-1].struct_relative)
    run = [c.t("ov_run_seed", e_first=_num(first.delta_norm), r_first=first.rank,
               e_last=_num(last.delta_norm), r_last=last.rank, maxdev=_pct(maxdev)),
           c.t("ov_run_opt", r_last=last.rank, opt_last=_pct(last.optimal_relative)),
           c.t("ov_run_struct", k=k, struct_k=_pct(struct_k), noise=_pct(sl.noise, 0))]
    if c.data.headline:
        run.append(c.data.headline)
    ranks = ", ".join(str(r.rank) for r in rows)
    body = (
        f"<p>{c.t('ov_p1')}</p>{c.f['update']}{c.f['shapes']}"
        f"<p>{c.t('ov_p2', d=d, p8=f'{2 * d * 8:,}', d2=f'{d * d:,}', pct8=_pct(16 / d, 2))}</p>"
        f"<p>{c.t('ov_p3', d=d, ranks='{' + ranks + '}')}</p>"
        f'<div class="box ok"><h3>{c.t("ov_run_h")}</h3><ul>'
        + "".join(f"<li>{line}</li>" for line in run) + "</ul></div>"
        f'<div class="box warn" id="traps"><h3>{c.t("ov_traps_h")}</h3><ol>'
        f"<li>{c.t('ov_trap1')}</li><li>{c.t('ov_trap2')}</li></ol></div>")
    return _section("overview", c.t("h_overview"), body)


def _flow(c: _Ctx) -> str:
    demo = c.data.demo
    cfg = demo.config
    ranks = "(" + ", ".join(str(r) for r in cfg.rank_candidates) + ")"
    vals = {"d": cfg.hidden_size, "ranks": ranks, "alpha": f"{cfg.alpha:g}",
            "seed": demo.seed, "w0": _num(demo.w0_norm)}
    steps = "".join(f"<li>{c.t(f'fl_{i}', **vals)}</li>" for i in range(1, 7))
    code = ("from loralab.demo import LoraConfig, simulate_lora, pseudo_code\n\n"
            f"result = simulate_lora(LoraConfig(hidden_size={cfg.hidden_size}, "
            f"rank_candidates={ranks}, alpha={cfg.alpha:g}), seed={demo.seed})\n"
            "pseudo_code()")
    body = f"<p>{c.t('fl_intro')}</p><ol>{steps}</ol><p>{c.t('fl_code')}</p>{_code(code)}"
    return _section("flow", c.t("h_flow"), body)


def _signature(obj: object, name: str) -> str:
    try:
        return f"{name}{inspect.signature(obj)}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return name


def _api(c: _Ctx) -> str:
    from .. import demo as demo_mod
    from .api import api_rows

    cfg = c.data.demo.config
    ranks = "(" + ", ".join(str(r) for r in cfg.rank_candidates) + ")"
    fields = [("hidden_size", str(cfg.hidden_size), "api_f_d"),
              ("rank_candidates", ranks, "api_f_r"), ("alpha", f"{cfg.alpha:g}", "api_f_a")]
    table = (f"<table><tr><th>{c.t('api_field')}</th><th>{c.t('api_value')}</th>"
             f"<th>{c.t('api_meaning')}</th></tr>"
             + "".join(f"<tr><td><code>{n}</code></td><td class=num>{v}</td><td>{c.t(k)}</td>"
                       "</tr>" for n, v, k in fields) + "</table>")
    parts = [f"<h3 id=\"api-config\"><code>LoraConfig</code></h3><p>{c.t('api_cfg')}</p>{table}"]
    for name, key in (("simulate_lora", "api_sim"), ("run_demo", "api_run"),
                      ("pseudo_code", "api_pseudo")):
        sig = html.escape(_signature(getattr(demo_mod, name), name))
        parts.append(f"<h3><code>{name}</code></h3><p><code>{sig}</code></p><p>{c.t(key)}</p>")
    parts.append(_code(demo_mod.PSEUDO_CODE))
    more = api_rows(c.lang)
    if more:
        parts.append(f"<h3>{c.t('api_more_h')}</h3><table><tr><th>{c.t('api_name')}</th>"
                     f"<th>{c.t('api_does')}</th></tr>"
                     + "".join(f"<tr><td><code>{html.escape(n)}</code></td><td>{d}</td></tr>"
                               for n, d in more) + "</table>")
    return _section("api", c.t("h_api"), "".join(parts))


def _math(c: _Ctx) -> str:
    demo = c.data.demo
    row = next((r for r in demo.rows if r.rank == 8), demo.rows[0])
    last = demo.rows[-1]
    f = c.f
    e4 = c.t("m_e4", r=row.rank, m=_num(row.delta_norm), t=_num(row.theory),
             s=_num(row.theory_std))
    ey4 = c.t("m_ey4", r=last.rank, kept=_pct(1 - last.optimal_relative**2),
              rel=_pct(last.optimal_relative))
    body = (
        f"<h3 id=\"math-update\">{c.t('m_h1')}</h3><p>{c.t('m_p1')}</p>{f['update']}{f['shapes']}"
        f"<p>{c.t('m_p2')}</p>{f['forward']}<p>{c.t('m_p3')}</p>{f['params']}"
        f"<p>{c.t('m_p4')}</p>{f['init']}"
        f'<div class="box warn"><p>{c.t("m_conv")}</p>{f["seed_conv"]}<p>{c.t("m_conv2")}</p>'
        "</div>"
        f"<h3 id=\"math-error\">{c.t('m_h2')}</h3><p>{c.t('m_e1')}</p>{f['seed_error']}"
        f"<p>{c.t('m_e2')}</p>{f['expect']}<p>{c.t('m_e3')}</p>{f['expect_num']}"
        f"<p>{e4}</p>"
        f"<h3 id=\"math-ey\">{c.t('m_h3')}</h3><p>{c.t('m_ey1')}</p>{f['eckart_young']}"
        f"<p>{c.t('m_ey2')}</p>{f['spectral']}"
        f"<p>{c.t('m_ey3', smax=_num(demo.singular_values[0], 2))}</p>{f['quarter']}"
        f"<p>{ey4}</p>"
        f"<h3>{c.t('m_h4')}</h3><p>{c.t('m_phi')}</p>{f['phi']}<p>{c.t('m_rs')}</p>{f['rslora']}")
    return _section("math", c.t("h_math"), body)


def _demo_table(c: _Ctx) -> str:
    demo = c.data.demo
    head = "".join(f'<th class="num">{c.t(k)}</th>' for k in
                   ("run_c_r", "run_c_seed", "run_c_th", "run_c_opt", "run_c_par"))
    body = "".join(
        f'<tr data-rank="{r.rank}"><td class="num">{r.rank}</td>'
        f'<td class="num">{_num(r.delta_norm, 2)}</td>'
        f'<td class="num">{_num(r.theory)} ± {_num(r.theory_std)}</td>'
        f'<td class="num">{_num(r.optimal_error)} ({_pct(r.optimal_relative)})</td>'
        f'<td class="num">{r.trainable_params:,} ({_pct(r.trainable_params / r.full_params, 2)})'
        "</td></tr>" for r in demo.rows)
    cfg = demo.config
    return (f"<p>{c.t('run_table', seed=demo.seed, d=cfg.hidden_size, alpha=f'{cfg.alpha:g}')}"
            f"</p><table><tr>{head}</tr>{body}</table>")


def _explorer(c: _Ctx) -> str:
    sl = c.data.slider
    rows = []
    for r in sl.rows:
        row = {"rank": f"r = {r.rank}", "rank_value": r.rank,
               "params": c.t("sl_params", p=f"{r.trainable_params:,}",
                             pct=_pct(r.trainable_params / r.full_params, 2),
                             full=f"{r.full_params:,}")
               + (c.t("sl_params_more") if r.trainable_params > r.full_params else ""),
               "seed": c.t("sl_seed", m=_num(r.seed_delta_norm), t=_num(r.theory)),
               "gauss": c.t("sl_gauss", e=_num(r.gauss_error), rel=_pct(r.gauss_relative)),
               "struct": c.t("sl_struct", rel=_pct(r.struct_relative))}
        row.update(c.data.slider_extra.get(r.rank, {}))
        rows.append(row)
    fields = ["params", "seed", "gauss", "struct"] + sorted(
        {k for extra in c.data.slider_extra.values() for k in extra})
    start = next((i for i, r in enumerate(sl.rows) if r.rank == 8), 0)
    payload = json.dumps({"rows": rows}, ensure_ascii=False).replace("</", "<\\/")
    imgs = "".join(_img(r.png, c.t("sl_alt", r=r.rank),
                        f' data-index="{i}"' + ("" if i == start else " hidden"))
                   for i, r in enumerate(sl.rows))
    ticks = "".join(f"<span>{r.rank}</span>" for r in sl.rows)
    nums = "".join(f'<li data-field="{k}">{html.escape(str(rows[start].get(k, "")))}</li>'
                   for k in fields)
    return (
        f'<h3 id="rank-explorer">{c.t("sl_h")}</h3>'
        f"<p>{c.t('sl_p', k=sl.signal_rank, c=sl.crop, d=sl.hidden_size)}</p>"
        '<div class="explorer"><div class="controls">'
        f'<label for="rank-slider">{c.t("sl_label")}</label>'
        f'<input type="range" id="rank-slider" min="0" max="{len(sl.rows) - 1}" step="1" '
        f'value="{start}"><output class="rank" data-field="rank" for="rank-slider">'
        f"{rows[start]['rank']}</output></div>"
        f'<div class="ticks" aria-hidden="true">{ticks}</div><ul class="nums">{nums}</ul>'
        f"{imgs}</div>"
        f'<script type="application/json" id="rank-data">{payload}</script>')


def _running(c: _Ctx) -> str:
    cfg = c.data.demo.config
    cmds = ("python lora_rank_demo.py\n"
            f"loralab demo --hidden-size {cfg.hidden_size} --ranks "
            f"{','.join(str(r) for r in cfg.rank_candidates)} --alpha {cfg.alpha:g} "
            f"--seed {c.data.demo.seed}\n"
            f"loralab report --preset {c.data.config.preset} --lang {c.lang} --out report")
    body = (f"<p>{c.t('run_cmd')}</p>{_code(cmds)}{_demo_table(c)}"
            f"{c.figure(c.data.demo_png, c.t('run_fig'))}{_explorer(c)}")
    return _section("running", c.t("h_running"), body)


def _faq(c: _Ctx) -> str:
    demo = c.data.demo
    sd = max(r.theory_std / r.theory for r in demo.rows)
    d = demo.config.hidden_size
    vals = {1: {"sd": _pct(sd)}, 5: {"mib": f"{4 * d * d / 2**20:g}", "d": d}}
    items = "".join(f"<dt>{c.t(f'faq_q{i}')}</dt><dd>{c.t(f'faq_a{i}', **vals.get(i, {}))}</dd>"
                    for i in range(1, 8))
    return _section("faq", c.t("h_faq"), f'<dl class="faq">{items}</dl>')


EXT_ORDER = (("svd", "ext_svd_h"), ("spectrum", "ext_spec_h"), ("heatmap", "ext_heat_h"),
             ("fit", "ext_fit_h"), ("finetune", "ext_ft_h"))


def _extensions(c: _Ctx) -> str:
    parts = [f"<p>{c.t('ext_intro')}</p>"]
    for key, title in EXT_ORDER:
        ext = c.data.extensions.get(key)
        parts.append(f'<h3 id="ext-{key}">{c.t(title)}</h3>')
        if key == "heatmap":
            parts.append(f"<p>{c.t('ext_heat_slider')}</p>")
        if ext is None or ext.missing:
            why = ext.missing if ext is not None else key
            parts.append(f'<p class="missing">{c.t("missing", why=html.escape(why))}</p>')
            continue
        parts.append(ext.html)
        parts.extend(c.figure(png, cap) for png, cap in ext.figures)
    return _section("extensions", c.t("h_ext"), "".join(parts))


def _toc(c: _Ctx) -> str:
    subs = {"running": [("rank-explorer", c.t("sl_h"))],
            "extensions": [(f"ext-{k}", c.t(h)) for k, h in EXT_ORDER]}
    items = []
    for sid in ("overview", "flow", "api", "math", "running", "faq", "extensions"):
        title = c.t(f"h_{'ext' if sid == 'extensions' else sid}")
        sub = "".join(f'<li><a href="#{i}">{x}</a></li>' for i, x in subs.get(sid, []))
        items.append(f'<li><a href="#{sid}">{title}</a>' + (f"<ol>{sub}</ol>" if sub else "")
                     + "</li>")
    return f'<nav class="toc"><h2>{c.t("toc")}</h2><ol>{"".join(items)}</ol></nav>'


def render_page(data: ReportData) -> str:
    """The whole page for ``data`` as one HTML string."""
    import torch

    from .. import plots
    from .assets import CSS, JS

    c = _Ctx(data)
    cfg = data.demo.config
    meta = c.t("meta", preset=data.config.preset, seed=data.config.seed, d=cfg.hidden_size,
               alpha=f"{cfg.alpha:g}", torch=torch.__version__, date=data.built,
               secs=f"{sum(data.seconds.values()):.1f}")
    hint = ""
    if c.lang == "zh" and not data.cjk_font:
        hint = f'<p class="meta">{c.t("cjk_hint", hint=html.escape(plots.CJK_FONT_HINT))}</p>'
    main = "".join(fn(c) for fn in (_overview, _flow, _api, _math, _running, _faq, _extensions))
    lang_attr = "zh-CN" if c.lang == "zh" else "en"
    return (
        f'<!DOCTYPE html>\n<html lang="{lang_attr}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>{c.t('title')}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{c.t('title')}</h1><p class=\"sub\">{c.t('subtitle')}</p>"
        f'<p class="meta">{meta}</p>{hint}</header>'
        f'<div class="layout">{_toc(c)}<main>{main}</main></div>'
        f"<script>{JS}</script></body></html>\n")
