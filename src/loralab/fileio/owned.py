"""Which existing files loralab wrote: a file loralab did not write is never replaced.

A command that writes a file (``--out fig.png``, ``--json r.json``, ``save_adapter``) records
what it wrote beside it, in ``.<name>.loralab-written``: the SHA-256 of the bytes. An existing
file at an output path may be replaced only when that record matches its bytes (loralab wrote
it, and nobody changed it since); any other file is the user's, and is replaced only with
an explicit ``--force`` (``overwrite=True`` in the library): :func:`check_replaceable`.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from ..errors import LoralabError

__all__ = ["check_replaceable", "file_sha256", "record_path", "record_written",
           "written_by_loralab"]

_SUFFIX = ".loralab-written"


def record_path(path: str | os.PathLike[str]) -> Path:
    """``dir/.<name>.loralab-written``, beside the real file (after symlinks)."""
    real = Path(os.path.realpath(path))
    return real.parent / f".{real.name}{_SUFFIX}"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def written_by_loralab(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds exactly the bytes loralab recorded writing there."""
    try:
        recorded = record_path(path).read_text(encoding="utf-8").strip()
        return bool(recorded) and recorded == file_sha256(Path(path))
    except (OSError, UnicodeDecodeError):
        return False


def record_written(path: str | os.PathLike[str]) -> None:
    """Record that loralab wrote ``path`` as it is now (no-op when it does not exist)."""
    from .atomic import atomic_write_text

    if Path(path).is_file():
        atomic_write_text(record_path(path), file_sha256(Path(path)) + "\n")


def check_replaceable(path: str | os.PathLike[str], what: str, *, force: bool = False,
                      how: str = "add --force to replace it") -> None:
    """Refuse when ``path`` is an existing regular file that loralab did not write (or that
    was changed since), unless ``force``. ``what`` names it (``"--json 'r.json'"``)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return                                   # missing: nothing to lose
    if force or not stat.S_ISREG(mode) or written_by_loralab(path):
        return
    raise LoralabError(f"{what} exists and loralab did not write it (or it changed since); a "
                       f"user's file is never replaced: give another name, or {how}")
