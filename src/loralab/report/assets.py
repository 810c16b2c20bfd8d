"""The report page's inline CSS and JavaScript (nothing is fetched: the page works offline
from ``file://``)."""

from __future__ import annotations

__all__ = ["CSS", "JS"]

CSS = """
:root { --ink:#1d232b; --muted:#5b6673; --line:#d8dee6; --bg:#ffffff; --soft:#f4f6f9;
  --accent:#1f78b4; --warn:#b35900; --warnbg:#fff4e5; --ok:#1b7a5a; --okbg:#e8f6f0; }
* { box-sizing: border-box; }
html { scroll-behavior: smooth; }
body { margin:0; color:var(--ink); background:var(--bg); font-size:17px; line-height:1.6;
  font-family: system-ui, -apple-system, "Segoe UI", "Noto Sans", "WenQuanYi Micro Hei",
  "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei", sans-serif; }
header { padding:1.6rem 2rem 1rem; border-bottom:1px solid var(--line); background:var(--soft); }
header h1 { margin:0; font-size:1.8rem; line-height:1.25; }
header .sub { margin:.3rem 0 0; font-size:1.1rem; color:var(--muted); }
header .meta { margin:.4rem 0 0; font-size:.9rem; color:var(--muted); }
.layout { display:grid; grid-template-columns: 15rem minmax(0, 1fr); gap:2rem;
  max-width:80rem; margin:0 auto; padding:0 2rem 4rem; }
nav.toc { position:sticky; top:0; align-self:start; max-height:100vh; overflow:auto;
  padding:1.2rem 0; font-size:.95rem; }
nav.toc h2 { font-size:1rem; margin:0 0 .4rem; text-transform:uppercase; letter-spacing:.05em;
  color:var(--muted); }
nav.toc ol { list-style:none; margin:0; padding:0; }
nav.toc ol ol { padding-left:1rem; font-size:.9rem; }
nav.toc a { display:block; padding:.15rem .4rem; color:var(--ink); text-decoration:none;
  border-radius:4px; }
nav.toc a:hover { background:var(--soft); color:var(--accent); }
main { min-width:0; padding-top:.6rem; }
section { padding-top:.4rem; }
h2 { font-size:1.5rem; margin:2rem 0 .6rem; padding-bottom:.3rem;
  border-bottom:2px solid var(--line); }
h3 { font-size:1.2rem; margin:1.5rem 0 .4rem; }
a { color:var(--accent); }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size:.9em;
  background:var(--soft); padding:.05em .3em; border-radius:3px; }
pre { background:#0f1720; color:#e6edf3; padding:1rem; border-radius:6px; overflow:auto;
  font-size:.85rem; line-height:1.45; }
pre code { background:none; padding:0; color:inherit; }
table { border-collapse:collapse; margin:.6rem 0 1rem; font-size:.95rem; }
th, td { border-bottom:1px solid var(--line); padding:.35rem .7rem; text-align:left;
  vertical-align:top; }
th { background:var(--soft); }
td.num, th.num { text-align:right; font-variant-numeric: tabular-nums; }
td.num { white-space:nowrap; }
tr.active td { background:#e8f1fa; }
math[display="block"] { margin:.35rem 0; font-size:1.15em; overflow-x:auto; overflow-y:hidden;
  padding:.5em 0; }   /* Chromium: tall glyphs overflow the line box, which drew scroll arrows */
figure { margin:1rem 0 1.4rem; }
figure img { max-width:100%; height:auto; border:1px solid var(--line); border-radius:4px; }
figcaption { color:var(--muted); font-size:.92rem; margin-top:.3rem; }
.box { border-left:5px solid var(--accent); background:var(--soft); padding:.7rem 1rem;
  margin:1rem 0; border-radius:0 6px 6px 0; }
.box.warn { border-color:var(--warn); background:var(--warnbg); }
.box.ok { border-color:var(--ok); background:var(--okbg); }
.box h3 { margin-top:.2rem; }
.box ul, .box ol { margin:.3rem 0; padding-left:1.3rem; }
.note { color:var(--muted); font-size:.92rem; }
.missing { border:1px dashed var(--warn); color:var(--warn); padding:.5rem .8rem;
  border-radius:6px; }
.explorer { border:1px solid var(--line); border-radius:8px; padding:1rem; margin:1rem 0; }
.explorer .controls { display:flex; align-items:center; gap:1rem; flex-wrap:wrap; }
.explorer input[type=range] { flex:1 1 18rem; accent-color:var(--accent); height:2rem; }
.explorer .rank { font-size:1.6rem; font-weight:700; min-width:6rem; }
.explorer .ticks { display:flex; justify-content:space-between; font-size:.8rem;
  color:var(--muted); padding:0 .3rem; }
.explorer ul.nums { list-style:none; padding:0; margin:.6rem 0; display:grid;
  grid-template-columns: repeat(auto-fit, minmax(22rem, 1fr)); gap:.3rem 1.2rem; }
.explorer ul.nums li { padding:.25rem .5rem; background:var(--soft); border-radius:4px; }
dl.faq dt { font-weight:700; margin-top:1rem; }
dl.faq dd { margin:.2rem 0 0 0; }
@media (max-width: 900px) {
  .layout { grid-template-columns: 1fr; padding:0 1rem 3rem; }
  nav.toc { position:static; max-height:none; }
}
@media print { nav.toc { display:none; } .layout { display:block; } }
"""

JS = """
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('rank-data').textContent);
  var slider = document.getElementById('rank-slider');
  if (!slider) { return; }
  var imgs = document.querySelectorAll('.explorer img[data-index]');
  var rows = document.querySelectorAll('tr[data-rank]');
  function show(i) {
    var row = data.rows[i];
    document.querySelectorAll('[data-field]').forEach(function (el) {
      var v = row[el.getAttribute('data-field')];
      if (v === undefined || v === null) { el.hidden = true; } else {
        el.hidden = false; el.innerHTML = v; }
    });
    imgs.forEach(function (img) { img.hidden = Number(img.getAttribute('data-index')) !== i; });
    rows.forEach(function (tr) {
      tr.classList.toggle('active', Number(tr.getAttribute('data-rank')) === row.rank_value);
    });
    slider.setAttribute('aria-valuetext', row.rank);
  }
  slider.addEventListener('input', function () { show(Number(slider.value)); });
  show(Number(slider.value));
})();
"""
