"""Writing files so that nothing is ever half-written.

Every artefact (PNG, JSON, safetensors, HTML) goes to a temporary file in the destination
folder and is renamed into place with :func:`os.replace` only once it is complete, so an
interrupted or failed run leaves either the old file or no file, never a truncated one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from .errors import LoralabError

__all__ = [
    "atomic_dir",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "check_output_dir",
    "check_output_file",
    "to_jsonable",
]


def check_output_dir(folder: str | os.PathLike[str], *, create: bool = False) -> Path:
    """Return ``folder`` as a Path after checking it is a writable directory.

    With ``create=True`` a missing folder is created, as long as its parent exists.
    Raises :class:`LoralabError` naming the folder otherwise.
    """
    path = Path(folder)
    if create and not path.exists():
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            raise LoralabError(f"output folder {str(path)!r}: its parent {str(parent)!r} "
                               "does not exist")
        try:
            path.mkdir()
        except OSError as exc:
            raise LoralabError(f"output folder {str(path)!r} cannot be created: "
                               f"{exc.strerror}") from None
    if not path.exists():
        raise LoralabError(f"output folder {str(path)!r} does not exist")
    if not path.is_dir():
        raise LoralabError(f"output folder {str(path)!r} is not a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        raise LoralabError(f"output folder {str(path)!r} is not writable")
    return path


def check_output_file(file: str | os.PathLike[str]) -> Path:
    """Check that ``file`` can be created: its folder exists and is writable."""
    path = Path(file)
    if path.is_dir():
        raise LoralabError(f"output file {str(path)!r} is a folder; give a file name")
    check_output_dir(path.parent if str(path.parent) else Path("."))
    return path


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(fileobj)`` on a temp file next to ``path``, then rename it to ``path``."""
    dest = check_output_file(path)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return dest


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` atomically."""
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def to_jsonable(obj: Any) -> Any:
    """Turn tensors, numpy values, tuples and dataclasses into plain JSON values.

    Non-finite floats become ``None`` so the file stays strict JSON.
    """
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # torch.Tensor, numpy arrays and scalars
        return to_jsonable(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` (after :func:`to_jsonable`) as indented JSON, atomically."""
    text = json.dumps(to_jsonable(obj), indent=2, ensure_ascii=False, allow_nan=False)
    return atomic_write_text(path, text + "\n")


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a folder in a temp sibling and move it to ``final`` only on success.

    An existing ``final`` folder is replaced as a whole; on error the temp folder is removed
    and ``final`` is untouched.
    """
    dest = Path(final)
    parent = check_output_dir(dest.parent if str(dest.parent) else Path("."))
    if dest.exists() and not dest.is_dir():
        raise LoralabError(f"output folder {str(dest)!r} exists and is not a folder")
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.chmod(tmp, 0o755)
        if dest.exists():
            old = Path(tempfile.mkdtemp(dir=parent, prefix=f".{dest.name}.", suffix=".old"))
            os.replace(dest, old / "x")
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
