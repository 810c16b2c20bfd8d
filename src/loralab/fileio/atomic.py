"""Writing files so that nothing is ever half-written, and the checks every path goes through.

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
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import LoralabError

__all__ = [
    "atomic_dir",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "check_input_file",
    "check_output_dir",
    "check_output_file",
    "find_non_finite",
    "require_finite",
    "to_jsonable",
]

_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _what(flag: str | None, default: str) -> str:
    return flag if flag else default


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def check_output_dir(folder: str | os.PathLike[str], *, create: bool = False,
                     flag: str | None = None) -> Path:
    """Return ``folder`` as a Path after checking it is a writable directory.

    With ``create=True`` a missing folder is created, as long as its parent exists.
    Raises :class:`LoralabError` naming the folder (and ``flag``, when given) otherwise.
    """
    path = Path(folder)
    what = f"{_what(flag, 'output folder')} {str(path)!r}"
    if create and not path.exists():
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            raise LoralabError(f"{what}: its parent {str(parent)!r} does not exist")
        try:
            path.mkdir()
        except FileExistsError:
            pass
        except OSError as exc:
            raise LoralabError(f"{what} cannot be created: {exc.strerror}") from None
    if not path.exists():
        raise LoralabError(f"{what} does not exist")
    if not path.is_dir():
        raise LoralabError(f"{what} is not a folder")
    if not os.access(path, os.W_OK | os.X_OK):
        raise LoralabError(f"{what} is not writable")
    return path


def check_output_file(file: str | os.PathLike[str], *, flag: str | None = None) -> Path:
    """Check that ``file`` can be created: its folder exists and is writable, and it is not a
    folder, a FIFO or a device (a rename would replace those with a plain file)."""
    path = Path(file)
    what = f"{_what(flag, 'output file')} {str(path)!r}"
    if path.is_dir():
        raise LoralabError(f"{what} is a folder; give a file name")
    with contextlib.suppress(OSError):
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise LoralabError(f"{what} is {_kind(mode)}; loralab writes whole files by "
                               "renaming them into place, so give the name of a regular file")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise LoralabError(f"{what}: folder {str(parent)!r} does not exist")
    check_output_dir(parent, flag=f"{what}: folder" if flag else None)
    return path


def check_input_file(file: str | os.PathLike[str], *, what: str = "input file") -> Path:
    """Check that ``file`` is an existing regular file, before anything opens it: a FIFO
    would block the read forever and a device (``/dev/zero``) would never end."""
    path = Path(file)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise LoralabError(f"{what} {str(path)!r} does not exist") from None
    except OSError as exc:
        raise LoralabError(f"{what} {str(path)!r} cannot be read: {exc.strerror}") from None
    if stat.S_ISDIR(mode):
        raise LoralabError(f"{what} {str(path)!r} is a folder; give a file")
    if not stat.S_ISREG(mode):
        raise LoralabError(f"{what} {str(path)!r} is {_kind(mode)}; only regular files are "
                           "read")
    return path


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(fileobj)`` on a temp file next to ``path``, then rename it to ``path``."""
    dest = check_output_file(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    except OSError as exc:                     # a full disk, a folder gone read-only
        raise _write_error(dest, exc) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, LoralabError):
            raise _write_error(dest, exc) from None
        raise
    return dest


def _write_error(dest: Path, exc: OSError) -> LoralabError:
    """``cannot write 'path': No space left on device``: the OS's reason, with the path."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return LoralabError(f"cannot write {str(dest)!r}: {reason}; nothing was written there "
                        "(an existing file is as it was)")


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


def find_non_finite(obj: Any, where: str = "") -> tuple[str, float] | None:
    """``(path, value)`` of the first inf/NaN float in ``obj`` (dicts, lists, dataclasses,
    tensors), e.g. ``("rows[2].delta_norm", inf)``; ``None`` when every number is finite."""
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        obj = obj.tolist()
    if isinstance(obj, dict):
        items = ((f"{where}.{k}" if where else str(k), v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(obj))
    else:
        if isinstance(obj, float) and not math.isfinite(obj):
            return where, obj
        return None
    for path, value in items:
        found = find_non_finite(value, path)
        if found is not None:
            return found
    return None


def require_finite(obj: Any, what: str, advice: str) -> None:
    """Raise ``LoralabError("overflow: ...")`` naming the first inf/NaN number of ``obj``:
    a result that overflowed is refused, never printed or saved as a number."""
    found = find_non_finite(obj)
    if found is not None:
        path, value = found
        raise LoralabError(f"overflow: {what} {path} came out as {value} (beyond the "
                           f"floating-point range); {advice}")


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
