"""The one exception type that means "the user asked for something we do not allow".

The CLI turns it (and ``ValueError`` / ``OSError`` from the layers below) into a single
``error: ...`` line and exit code 2. Library callers can catch it like any ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Collection

__all__ = ["LoralabError", "check_choice"]


class LoralabError(ValueError):
    """Bad input: the message names the bad value and what is allowed."""


def check_choice(label: str, value: object, allowed: Collection[str]) -> None:
    """Raise ``LoralabError("<label> 'x' is not allowed; choose one of a, b")`` unless
    ``value`` is one of ``allowed``. ``label`` may end in ``=`` (``"dtype="``)."""
    if value not in allowed:
        sep = "" if label.endswith("=") else " "
        raise LoralabError(f"{label}{sep}{value!r} is not allowed; choose one of "
                           f"{', '.join(allowed)}")
