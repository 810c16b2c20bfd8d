"""A result read back from JSON is checked field by field against its type.

``results.json`` is loralab's own state, but a file can be edited, truncated or written by
an older version: a string where a loss belongs would fail deep inside a format call, and a
``NaN`` (which Python's ``json`` reads) would be printed on the report page. Every number a
result type declares (``int``, ``float``, ``list[float]``, nested result types) must be a
finite number of that kind, or ``None`` where the JSON writer stores a value that was not
measured; anything else is one :class:`~loralab.errors.LoralabError` naming the field.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

from ..errors import LoralabError

__all__ = ["check_numbers"]

_NUMBER = {"int": int, "float": float}


def _bad_number(value: Any, kind: str) -> str | None:
    """Why ``value`` is not a finite ``kind`` (``None`` when it is one, or is ``None``)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"is {value!r} (a {type(value).__name__}); a number is needed"
    if kind == "int" and not isinstance(value, int):
        return f"is {value!r}; an integer is needed"
    if not math.isfinite(value):
        return f"is {value!r}; only finite numbers are allowed"
    return None


def _check_value(value: Any, hint: Any, where: str) -> None:
    text = str(hint)
    if dataclasses.is_dataclass(value):
        check_numbers(value, where)
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            if dataclasses.is_dataclass(item):
                check_numbers(item, f"{where}[{i}]")
            elif isinstance(item, list):                 # list[list[float]]: each row
                _check_value(item, hint, f"{where}[{i}]")
            elif "list[float]" in text or "list[int]" in text:
                why = _bad_number(item, "int" if "list[int]" in text else "float")
                if why:
                    raise LoralabError(f"{where}[{i}] {why}")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise LoralabError(f"{where}[{k!r}] is {v!r}; only finite numbers are allowed")
        return
    kinds = [k for k in ("float", "int") if k in text.replace("list[", "[")]
    if kinds and "[" not in text and "str" not in text:
        why = _bad_number(value, kinds[0])
        if why:
            raise LoralabError(f"{where} {why}")


def check_numbers(obj: Any, where: str = "result") -> None:
    """Check every numeric field of the dataclass ``obj`` (recursively); raise
    :class:`LoralabError` naming the first bad one (``runs[0].final_val_loss is 'abc' ...``)."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        _check_value(getattr(obj, f.name), hints.get(f.name, Any), f"{where}.{f.name}")
