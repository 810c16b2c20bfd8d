"""The one exception type that means "the user asked for something we do not allow".

The CLI turns it (and ``ValueError`` / ``OSError`` from the layers below) into a single
``error: ...`` line and exit code 2. Library callers can catch it like any ``ValueError``.
"""

from __future__ import annotations

__all__ = ["LoralabError"]


class LoralabError(ValueError):
    """Bad input: the message names the bad value and what is allowed."""
