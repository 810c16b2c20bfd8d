"""``loralab check``'s short text: keys, modules, vocabulary, ties, init, stages, findings.

:func:`format_check` turns a :class:`~loralab.results.check.CheckReport` into the lines the
command prints; the ``--json`` file holds every row (every key, every module), the text only
what a reader checks first: counts, the odd keys (up to :data:`SHOWN`), modules grouped by
name, one line per stage, every finding and every serving limit that applies.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from ..results.check import STAGES, CheckReport, KeyRow, ModuleRow

__all__ = ["SHOWN", "format_check"]

SHOWN = 5


def _key_lines(report: CheckReport) -> list[str]:
    dtypes = Counter(k.dtype for k in report.keys if k.status == "used")
    kinds = ", ".join(f"{n} {d}" for d, n in dtypes.most_common())
    out = [f"keys: {report.count('used')} used ({kinds or 'none'}), {report.count('unused')} "
           f"unused, {report.count('missing')} missing"]
    odd: list[KeyRow] = [k for k in report.keys if k.status != "used" or k.non_finite]
    for k in odd[:SHOWN]:
        shape = "—" if k.shape is None else f"{k.shape} {k.dtype}"
        extra = f", {k.non_finite} NaN/Inf" if k.non_finite else ""
        out.append(f"  {k.status:<7} {k.key}  {shape}{extra}" + (f"  ({k.why})" if k.why else ""))
    if len(odd) > SHOWN:
        out.append(f"  … and {len(odd) - SHOWN} more (all in --json)")
    return out


def _module_lines(modules: list[ModuleRow]) -> list[str]:
    groups: dict[tuple, list[ModuleRow]] = defaultdict(list)
    for m in modules:
        groups[(m.path.rsplit(".", 1)[-1], m.rank, m.alpha, m.scale)].append(m)
    out = []
    for (name, r, alpha, s), rows in groups.items():
        layers = sorted({m.layer for m in rows if m.layer is not None})
        where = f"layers {layers[0]}–{layers[-1]}" if len(layers) > 1 else \
            (f"layer {layers[0]}" if layers else rows[0].path)
        out.append(f"  {name} ×{len(rows)} ({where}): r={r} α={alpha:g} scale={s:.4g}")
    return out


def _stage_lines(report: CheckReport) -> list[str]:
    if not report.stages:
        return [f"logits: {report.stages_note or 'not measured'}"]
    out = [f"logits on the sample ({report.text_tokens} tokens), max |Δz|:",
           f"  {'stage':<15} {'max |Δz|':>10} {'allowed':>10}  holds  what"]
    for r in report.stages:
        d = "—" if r.max_abs_diff is None else f"{r.max_abs_diff:.3g}"
        tol = "—" if r.tolerance is None else f"{r.tolerance:.3g}"
        mark = "yes" if r.holds else "NO"
        note = f"; {r.note}" if r.note else ""
        out.append(f"  {r.stage:<15} {d:>10} {tol:>10}  {mark:<5}  {STAGES[r.stage]}{note}")
    return out


def format_check(report: CheckReport) -> str:
    """The text ``loralab check`` prints for ``report``."""
    saved = ", ".join(report.modules_to_save) or "none"
    emb = ", ".join(f"{k} ({v:,})" for k, v in report.saved_embeddings.items()) or "none"
    tie = ("the base ties its input and output embeddings; the adapter "
           + ("keeps them tied" if report.ties_kept else "does NOT keep them tied")
           ) if report.base_tied else "the base does not tie its embeddings"
    init = "nothing to convert" if report.init_converted else "NOT converted"
    layers = (f"{report.layers[0]}–{report.layers[-1]}" if len(report.layers) > 1 else
              ", ".join(map(str, report.layers)) or "none")
    lines = [f"adapter {report.adapter} on base {report.base}", *_key_lines(report),
             f"LoRA modules: {len(report.modules)} in layers {layers}; "
             f"modules_to_save: {saved}", *_module_lines(report.modules),
             f"vocabulary: base {report.base_vocab:,}; saved embeddings: {emb}",
             f"ties: {tie}", f"init: init_lora_weights={report.init!r} ({init})",
             *_stage_lines(report)]
    if report.findings:
        lines.append(f"findings ({len(report.findings)}):")
        lines += [f"  [{f.kind}] {f.message}" for f in report.findings]
    else:
        lines.append("findings: none; the adapter on this base is what was trained")
    hits = [s for s in report.limits if s.applies]
    servers = ", ".join(dict.fromkeys(s.server for s in report.limits))
    lines.append(f"serving limits ({servers}): {len(hits)} of the {len(report.limits)} known "
                 f"apply (all, with sources, in --json){':' if hits else ''}")
    for s in hits:
        lines.append(f"  {s.server}: {s.fact}; {s.advice} [{s.source}]")
    return "\n".join(lines)
