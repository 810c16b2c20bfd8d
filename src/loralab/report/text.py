"""The report's words: one catalogue per language, ``catalogues/<lang>.toml``.

A catalogue is a flat TOML file of ``key = "text"`` entries, so a translator edits words and
never Python. Texts are HTML fragments with ``{name}`` placeholders (``str.format`` style);
:func:`t` fills them for the page, escaping every value that is not already
:class:`markupsafe.Markup`, and returns ``Markup``. :func:`plain` returns a text as it is
written, for labels drawn inside figures and words inside MathML formulas.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType
from typing import Any

from markupsafe import Markup

from ..errors import LoralabError

if sys.version_info >= (3, 11):
    import tomllib
else:                                          # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["catalogue", "plain", "t"]

# Subscripts written plainly in the catalogues, shown as HTML sub/superscripts on the page.
_SUBSCRIPTS: tuple[tuple[str, str], ...] = (
    ("‖²_F", "‖<sup>2</sup><sub>F</sub>"), ("‖_F", "‖<sub>F</sub>"),
    ("d_in", "d<sub>in</sub>"), ("d_out", "d<sub>out</sub>"), ("W₀,r", "W<sub>0,r</sub>"),
    ("σ_max", "σ<sub>max</sub>"),
)


@functools.cache
def catalogue(lang: str) -> Mapping[str, str]:
    """Every text of ``lang`` (``"en"`` or ``"zh"``), keyed by name, as written in
    ``catalogues/<lang>.toml`` (read once per process)."""
    path = resources.files(__package__) / "catalogues" / f"{lang}.toml"
    if not lang.isalnum() or not path.is_file():
        raise LoralabError(f"language {lang!r} has no catalogue (catalogues/{lang}.toml)")
    entries = tomllib.loads(path.read_text(encoding="utf-8"))
    bad = sorted(k for k, v in entries.items() if not isinstance(v, str))
    if bad:
        raise LoralabError(f"catalogue {lang}.toml: {bad[0]!r} is not a text (key = \"text\")")
    return MappingProxyType(entries)


def _entry(key: str, lang: str) -> str:
    try:
        return catalogue(lang)[key]
    except KeyError:
        raise KeyError(f"no text {key!r} in the report's catalogue {lang}.toml") from None


def plain(key: str, lang: str, /, **values: Any) -> str:
    """The text ``key`` in ``lang`` as written, its placeholders filled from ``values``
    (figure labels, words inside formulas: no HTML)."""
    return _entry(key, lang).format(**values)


def t(key: str, lang: str, /, **values: Any) -> Markup:
    """The text ``key`` in ``lang`` as page HTML: the catalogue's markup kept, its plainly
    written subscripts marked up, and its placeholders filled from ``values``, each escaped
    unless it is :class:`~markupsafe.Markup` already."""
    text = _entry(key, lang)
    for written, marked in _SUBSCRIPTS:
        text = text.replace(written, marked)
    return Markup(text).format(**values)
