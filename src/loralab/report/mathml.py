"""The report's formulas as MathML Core, so they render in any current browser with no CDN.

A handful of tiny builders (``mi``, ``mo``, ``frac``, ...) compose MathML strings, and
:func:`formulas` returns every formula the page uses, keyed by name. Numbers that depend on
the run (``d``, ``α``) are passed in, so a formula shows this run's values beside the symbols.
"""

from __future__ import annotations

import html

NBSP = "\u00a0"

__all__ = ["formulas", "frac", "math", "mi", "mn", "mo", "msub", "msup", "row"]


def mi(x: str, normal: bool = False) -> str:
    """An identifier (italic when one letter, upright with ``normal=True``)."""
    attr = ' mathvariant="normal"' if normal else ""
    return f"<mi{attr}>{html.escape(x)}</mi>"


def mn(x: str | float) -> str:
    """A number."""
    return f"<mn>{html.escape(str(x))}</mn>"


def mo(x: str) -> str:
    """An operator."""
    return f"<mo>{html.escape(x)}</mo>"


def mtext(x: str) -> str:
    """Plain text inside a formula (outer spaces kept as no-break spaces: MathML trims
    ordinary ones)."""
    stripped = x.strip(" ")
    lead, trail = len(x) - len(x.lstrip(" ")), len(x) - len(x.rstrip(" "))
    return f"<mtext>{NBSP * lead}{html.escape(stripped)}{NBSP * trail}</mtext>"


def row(*parts: str) -> str:
    """Group parts into one ``mrow``."""
    return f"<mrow>{''.join(parts)}</mrow>"


def frac(a: str, b: str) -> str:
    """``a / b`` as a fraction."""
    return f"<mfrac>{a}{b}</mfrac>"


def msub(a: str, b: str) -> str:
    """``a`` with subscript ``b``."""
    return f"<msub>{a}{b}</msub>"


def msup(a: str, b: str) -> str:
    """``a`` with superscript ``b``."""
    return f"<msup>{a}{b}</msup>"


def msubsup(a: str, b: str, c: str) -> str:
    """``a`` with subscript ``b`` and superscript ``c``."""
    return f"<msubsup>{a}{b}{c}</msubsup>"


def sqrt(a: str) -> str:
    """Square root."""
    return f"<msqrt>{a}</msqrt>"


def under(a: str, b: str) -> str:
    """``a`` with ``b`` set underneath (limits of a sum or min)."""
    return f"<munder>{a}{b}</munder>"


def math(*parts: str, block: bool = True) -> str:
    """A complete ``<math>`` element (block or inline)."""
    disp = ' display="block"' if block else ""
    return f'<math{disp}>{"".join(parts)}</math>'


def _norm(x: str, sub: str = "F") -> str:
    """``‖x‖_F``."""
    return msub(row(mo("‖"), x, mo("‖")), mi(sub))


def _real(a: str, b: str) -> str:
    """``ℝ^{a×b}``."""
    return msup(mi("ℝ", normal=True), row(a, mo("×"), b))


def formulas(d: int = 512, alpha: float = 16.0, lang: str = "en") -> dict[str, str]:
    """Every formula of the page, keyed by name, as MathML strings (block unless ``_i``)."""
    zh = lang == "zh"
    W, A, B, r, x, y = mi("W"), mi("A"), mi("B"), mi("r"), mi("x"), mi("y")
    W0 = msub(mi("W"), mn(0))
    dW = row(mi("Δ", normal=True), mi("W"))
    al = mi("α")
    scale = frac(al, r)
    din, dout = msub(mi("d"), mi("in", normal=True)), msub(mi("d"), mi("out", normal=True))
    T = mi("⊤", normal=True)
    sig_i = msub(mi("σ"), mi("i"))
    wr = msubsup(mi("W"), r, mo("⋆"))
    a_txt = f"{alpha:g}"
    u1 = row(mo("("), msubsup(mi("U"), mn(1), mi("i")), mo(")"))      # (U₁ⁱ)
    vs = "对比" if zh else "vs"
    f = {
        "update": math(W, mo("="), W0, mo("+"), dW, mo(","), mspace(), dW, mo("="), scale,
                       B, A, mo(","), mspace(),
                       row(mi("rank", normal=True), mo("("), dW, mo(")")), mo("≤"), r),
        "shapes": math(A, mo("∈"), _real(r, din), mo(","), mspace(), B, mo("∈"),
                       _real(dout, r), mo(","), mspace(), dW, mo("∈"), _real(dout, din)),
        "forward": math(y, mo("="), x, msubsup(mi("W"), mn(0), T), mo("+"), scale, row(
            mo("("), x, msup(A, T), mo(")")), msup(B, T)),
        "params": math(r, row(mo("("), din, mo("+"), dout, mo(")")), mo("="), mn(2), mi("d"),
                       r, mo("≪"), msup(mi("d"), mn(2)), mspace(),
                       mtext("（d_in = d_out = d 时）" if zh else "(when d_in = d_out = d)")),
        "seed_error": math(_norm(row(W0, mo("−"), row(mo("("), W0, mo("+"), dW, mo(")")))),
                           mo("="), _norm(dW)),
        "expect": math(
            mi("E", normal=True), msubsup(row(mo("‖"), B, A, mo("‖")), mi("F"), mn(2)),
            mo("="), dout, din, r, mspace(), mo("⇒"), mspace(),
            mi("E", normal=True), msubsup(row(mo("‖"), dW, mo("‖")), mi("F"), mn(2)),
            mo("="), msup(scale, mn(2)), dout, din, r, mo("="),
            frac(row(msup(al, mn(2)), dout, din), r), mspace(), mo("⇒"), mspace(),
            _norm(dW), mo("≈"), frac(row(al, mi("d")), sqrt(r))),
        "expect_num": math(frac(row(al, mi("d")), sqrt(r)), mo("="),
                           frac(row(mn(a_txt), mo("·"), mn(d)), sqrt(r)), mo("="),
                           frac(mn(f"{alpha * d:,.0f}"), sqrt(r))),
        "eckart_young": math(
            under(mi("min", normal=True), row(mi("rank", normal=True), mi("X"), mo("≤"), r)),
            msubsup(row(mo("‖"), W, mo("−"), mi("X"), mo("‖")), mi("F"), mn(2)), mo("="),
            msubsup(row(mo("‖"), W, mo("−"), wr, mo("‖")), mi("F"), mn(2)), mo("="),
            under(mo("∑"), row(mi("i"), mo(">"), r)), msup(sig_i, mn(2)), mo(","), mspace(),
            wr, mo("="), under(mo("∑"), row(mi("i"), mo("≤"), r)), sig_i,
            msub(mi("u"), mi("i")), msubsup(mi("v"), mi("i"), T)),
        "spectral": math(msub(row(mo("‖"), W, mo("−"), wr, mo("‖")), mn(2)), mo("="),
                         msub(mi("σ"), row(r, mo("+"), mn(1)))),
        "seed_conv": math(mtext("种子文档第四节：" if zh else "seed §4:  "), A, mo("∈"),
                          _real(mi("d"), r), mo(","), mspace(), B, mo("∈"), _real(r, mi("d")),
                          mo(","), mspace(), dW, mo("="), scale, A, B),
        "quarter": math(msub(mi("σ"), mi("max", normal=True)), mo("≈"), mn(2), sqrt(mi("d")),
                        mo("="), mn(f"{2 * d ** 0.5:.1f}"), mo(","), mspace(),
                        _norm(W0), mo("≈"), mi("d"), mo("="), mn(d)),
        "phi": math(mi("φ"), row(mo("("), msub(A, mn(1)), mo(","), msub(A, mn(2)), mo(","),
                                 mi("i"), mo(","), mi("j"), mo(")")), mo("="),
                    frac(msubsup(row(mo("‖"), msup(u1, T), msubsup(mi("U"), mn(2), mi("j")),
                                     mo("‖")), mi("F"), mn(2)),
                         row(mi("min", normal=True), mo("("), mi("i"), mo(","), mi("j"),
                             mo(")")))),
        "rslora": math(msub(mi("γ"), r), mo("="), frac(al, r), mtext(f"  (LoRA)     {vs}     "),
                       msub(mi("γ"), r), mo("="), frac(al, sqrt(r)), mtext("  (rsLoRA)")),
        "init": math(B, mo("="), mn(0), mspace(), mo("⇒"), mspace(), dW, mo("="), mn(0),
                     mtext("（第 0 步）" if zh else "  at step 0")),
    }
    # Inline versions of a few short symbols used in the prose.
    f["dW_i"] = math(dW, block=False)
    f["ba_i"] = math(scale, B, A, block=False)
    f["sqrt_i"] = math(frac(row(al, mi("d")), sqrt(r)), block=False)
    return f


def mspace() -> str:
    """A medium space between parts of one formula."""
    return '<mspace width="1em"></mspace>'
