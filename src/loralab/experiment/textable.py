"""Aligned text and GitHub markdown tables, shared by :mod:`.tables` and
:mod:`.forgetting_tables`."""

from __future__ import annotations

import math

__all__ = ["human_bytes"]


def human_bytes(n: float) -> str:
    """``1536`` -> ``1.5 KiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _table(header: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return out + ["| " + " | ".join(r) + " |" for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    fmt = lambda cells: "  ".join(c.rjust(w) if i else c.ljust(w)  # noqa: E731
                                  for i, (c, w) in enumerate(zip(cells, widths, strict=True)))
    return [fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]


def _f(x: float | None, spec: str = ".3f") -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:{spec}}"


def _titled(title: str, header: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
    """A blank line, ``title``, a blank line, then the table."""
    return ["", title, "", *_table(header, rows, markdown)]
