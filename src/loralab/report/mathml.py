"""The report's formulas as MathML Core, so they render in any current browser with no CDN.

A handful of tiny builders (``mi``, ``mo``, ``frac``, ...) compose MathML strings (their text
escaped here), and :func:`formulas` returns every formula the page uses, keyed by name; the
page passes them to its templates as trusted markup. Numbers that depend on the run (``d``,
``α``) are passed in, so a formula shows this run's values beside the symbols.
"""

from __future__ import annotations

import html

from .text import plain

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


class _Symbols:
    """The symbols every formula shares, as MathML."""

    def __init__(self) -> None:
        self.W, self.A, self.B, self.r = mi("W"), mi("A"), mi("B"), mi("r")
        self.W0 = msub(mi("W"), mn(0))
        self.dW = row(mi("Δ", normal=True), mi("W"))
        self.al = mi("α")
        self.scale = frac(self.al, self.r)
        self.din = msub(mi("d"), mi("in", normal=True))
        self.dout = msub(mi("d"), mi("out", normal=True))
        self.T = mi("⊤", normal=True)
        self.sig_i = msub(mi("σ"), mi("i"))
        self.wr = msubsup(mi("W"), self.r, mo("⋆"))


def _lora_formulas(s: _Symbols, lang: str) -> dict[str, str]:
    """LoRA's update, shapes, forward pass, parameter count and initialisation."""
    W, A, B, r, W0, dW = s.W, s.A, s.B, s.r, s.W0, s.dW
    return {
        "update": math(W, mo("="), W0, mo("+"), dW, mo(","), mspace(), dW, mo("="), s.scale,
                       B, A, mo(","), mspace(),
                       row(mi("rank", normal=True), mo("("), dW, mo(")")), mo("≤"), r),
        "shapes": math(A, mo("∈"), _real(r, s.din), mo(","), mspace(), B, mo("∈"),
                       _real(s.dout, r), mo(","), mspace(), dW, mo("∈"), _real(s.dout, s.din)),
        "forward": math(mi("y"), mo("="), mi("x"), msubsup(mi("W"), mn(0), s.T), mo("+"),
                        s.scale, row(mo("("), mi("x"), msup(A, s.T), mo(")")), msup(B, s.T)),
        "params": math(r, row(mo("("), s.din, mo("+"), s.dout, mo(")")), mo("="), mn(2),
                       mi("d"), r, mo("≪"), msup(mi("d"), mn(2)), mspace(),
                       mtext(plain("mf_when_square", lang))),
        "init": math(B, mo("="), mn(0), mspace(), mo("⇒"), mspace(), dW, mo("="), mn(0),
                     mtext(plain("mf_step0", lang))),
        "seed_conv": math(mtext(plain("mf_seed4", lang)), A, mo("∈"), _real(mi("d"), r),
                          mo(","), mspace(), B, mo("∈"), _real(r, mi("d")), mo(","), mspace(),
                          dW, mo("="), s.scale, A, B),
    }


def _error_formulas(s: _Symbols, d: int, alpha: float) -> dict[str, str]:
    """What the seed's 'error' is, its expectation, and this run's numbers in it."""
    B, A, r, W0, dW, al = s.B, s.A, s.r, s.W0, s.dW, s.al
    E = mi("E", normal=True)
    return {
        "seed_error": math(_norm(row(W0, mo("−"), row(mo("("), W0, mo("+"), dW, mo(")")))),
                           mo("="), _norm(dW)),
        "expect": math(
            E, msubsup(row(mo("‖"), B, A, mo("‖")), mi("F"), mn(2)),
            mo("="), s.dout, s.din, r, mspace(), mo("⇒"), mspace(),
            E, msubsup(row(mo("‖"), dW, mo("‖")), mi("F"), mn(2)),
            mo("="), msup(s.scale, mn(2)), s.dout, s.din, r, mo("="),
            frac(row(msup(al, mn(2)), s.dout, s.din), r), mspace(), mo("⇒"), mspace(),
            _norm(dW), mo("≈"), frac(row(al, mi("d")), sqrt(r))),
        "expect_num": math(frac(row(al, mi("d")), sqrt(r)), mo("="),
                           frac(row(mn(f"{alpha:g}"), mo("·"), mn(d)), sqrt(r)), mo("="),
                           frac(mn(f"{alpha * d:,.0f}"), sqrt(r))),
    }


def _svd_formulas(s: _Symbols, d: int) -> dict[str, str]:
    """Eckart–Young in the Frobenius and spectral norms, and the quarter-circle scale."""
    W, r, wr = s.W, s.r, s.wr
    return {
        "eckart_young": math(
            under(mi("min", normal=True), row(mi("rank", normal=True), mi("X"), mo("≤"), r)),
            msubsup(row(mo("‖"), W, mo("−"), mi("X"), mo("‖")), mi("F"), mn(2)), mo("="),
            msubsup(row(mo("‖"), W, mo("−"), wr, mo("‖")), mi("F"), mn(2)), mo("="),
            under(mo("∑"), row(mi("i"), mo(">"), r)), msup(s.sig_i, mn(2)), mo(","),
            mspace(), wr, mo("="), under(mo("∑"), row(mi("i"), mo("≤"), r)), s.sig_i,
            msub(mi("u"), mi("i")), msubsup(mi("v"), mi("i"), s.T)),
        "spectral": math(msub(row(mo("‖"), W, mo("−"), wr, mo("‖")), mn(2)), mo("="),
                         msub(mi("σ"), row(r, mo("+"), mn(1)))),
        "quarter": math(msub(mi("σ"), mi("max", normal=True)), mo("≈"), mn(2), sqrt(mi("d")),
                        mo("="), mn(f"{2 * d ** 0.5:.1f}"), mo(","), mspace(),
                        _norm(s.W0), mo("≈"), mi("d"), mo("="), mn(d)),
    }


def _more_formulas(s: _Symbols, lang: str) -> dict[str, str]:
    """The subspace similarity φ and rsLoRA's scale (chapter 7)."""
    A, r, T = s.A, s.r, s.T
    u1 = row(mo("("), msubsup(mi("U"), mn(1), mi("i")), mo(")"))      # (U₁ⁱ)
    vs = plain("mf_vs", lang)
    return {
        "phi": math(mi("φ"), row(mo("("), msub(A, mn(1)), mo(","), msub(A, mn(2)), mo(","),
                                 mi("i"), mo(","), mi("j"), mo(")")), mo("="),
                    frac(msubsup(row(mo("‖"), msup(u1, T), msubsup(mi("U"), mn(2), mi("j")),
                                     mo("‖")), mi("F"), mn(2)),
                         row(mi("min", normal=True), mo("("), mi("i"), mo(","), mi("j"),
                             mo(")")))),
        "rslora": math(msub(mi("γ"), r), mo("="), frac(s.al, r),
                       mtext(f"  (LoRA)     {vs}     "), msub(mi("γ"), r), mo("="),
                       frac(s.al, sqrt(r)), mtext("  (rsLoRA)")),
    }


def formulas(d: int = 512, alpha: float = 16.0, lang: str = "en") -> dict[str, str]:
    """Every formula of the page, keyed by name, as MathML strings (display blocks); the
    words inside them come from the catalogue of ``lang``."""
    s = _Symbols()
    return {**_lora_formulas(s, lang), **_error_formulas(s, d, alpha), **_svd_formulas(s, d),
            **_more_formulas(s, lang)}


def mspace() -> str:
    """A medium space between parts of one formula."""
    return '<mspace width="1em"></mspace>'
