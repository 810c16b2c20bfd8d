"""The progress bar of the long commands (``finetune``, ``report``), on stderr.

On a terminal it redraws in place as tqdm does. When stderr is not a terminal (a CI log, a
pipe, a file) every redraw would become a new chunk, hundreds of lines for one quick run, so
the bar then updates at most every :data:`LOG_INTERVAL_S` seconds (and once at the end).
Either way it first shows after a second, so a command refused at once prints only its
``error:`` line.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["LOG_INTERVAL_S", "progress_bar"]

LOG_INTERVAL_S = 30.0


def progress_bar(total: int, desc: str | None = None, file: Any = None) -> Any:
    """A ``tqdm`` over ``total`` steps on ``file`` (default stderr): live on a terminal,
    one line per :data:`LOG_INTERVAL_S` seconds otherwise."""
    from tqdm import tqdm

    file = sys.stderr if file is None else file
    isatty = getattr(file, "isatty", None)
    live = bool(isatty and isatty())
    return tqdm(total=total, unit="step", file=file, dynamic_ncols=live, desc=desc, delay=1.0,
                mininterval=0.1 if live else LOG_INTERVAL_S,
                maxinterval=10.0 if live else LOG_INTERVAL_S * 2)
