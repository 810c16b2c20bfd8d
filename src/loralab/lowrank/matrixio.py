"""Load a user's matrix for the low-rank commands: ``--input PATH[:KEY]``.

Three formats, none of which can run code: ``.npy`` (read with
``numpy.load(allow_pickle=False)``, so object arrays are refused), ``.safetensors``
(``KEY`` names the tensor; a file holding one tensor needs no key) and ``.gguf`` (a real
model's own file, ``KEY`` a GGUF tensor name such as ``blk.0.attn_q.weight``, de-quantized to
float32 by :mod:`loralab.fileio.gguf`: the weight the model computes with). Every problem becomes
one :class:`~loralab.errors.LoralabError` line: a missing file or key (the message lists the
keys), a path that is not a regular file (a FIFO or a device is refused before it is
opened), a file that is not valid ``.npy``/``.safetensors``, a tensor that is not 2-D, empty,
complex or non-numeric, NaN/Inf entries, entries that the cast to ``--dtype`` would turn into
inf or 0 (checked after the cast, :func:`loralab.fileio.tensors.checked_cast`: a float64
``1e-300`` is never silently read as float32 ``0``), or values whose norm would overflow the
dtype. float8 tensors are read through their exact float32 values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import LoralabError
from ..fileio import check_input_file
from ..fileio.tensors import checked_cast
from .matrices import as_matrix

if TYPE_CHECKING:
    import torch

__all__ = ["FORMATS", "LoadedMatrix", "check_spec", "list_keys", "load_matrix", "parse_spec"]

FORMATS: tuple[str, ...] = (".npy", ".safetensors", ".gguf")
_MAX_KEYS_SHOWN = 20


@dataclass
class LoadedMatrix:
    """A loaded matrix and where it came from.

    Attributes:
        tensor: ``(m, n)``, finite, in the requested dtype.
        path: the file.
        key: the safetensors key (``None`` for ``.npy``).
        source_dtype: the dtype stored in the file, e.g. ``"float16"``.
    """

    tensor: torch.Tensor
    path: str
    key: str | None
    source_dtype: str

    @property
    def label(self) -> str:
        """``file.npy`` or ``file.safetensors:key``."""
        name = os.path.basename(self.path)
        return f"{name}:{self.key}" if self.key is not None else name


def parse_spec(spec: str) -> tuple[Path, str | None]:
    """``"PATH[:KEY]"`` -> ``(Path, key or None)``. A path that exists as given wins, so
    file names with colons still work; otherwise the text after the last colon is the key."""
    if not spec:
        raise LoralabError("--input is empty; give PATH or PATH:KEY")
    path = Path(spec)
    if path.exists() or ":" not in spec:
        return path, None
    head, key = spec.rsplit(":", 1)
    if not head:
        raise LoralabError(f"--input {spec!r} has no file name before ':'")
    return Path(head), key if key else None


def _format(path: Path) -> str:
    if path.is_dir():
        raise LoralabError(f"input {str(path)!r} is a folder; give a .npy, .safetensors or "
                           ".gguf file")
    check_input_file(path)                   # a FIFO or device is never opened
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise LoralabError(f"input file {str(path)!r} has suffix {suffix or '(none)'!r}; only "
                           f"{' and '.join(FORMATS)} files are allowed")
    return suffix


def check_spec(spec: str) -> tuple[Path, str | None]:
    """Check ``PATH[:KEY]`` names a regular ``.npy``/``.safetensors`` file, reading nothing
    (so a command can refuse a bad second input before loading the first)."""
    path, key = parse_spec(spec)
    _format(path)
    return path, key


def _keys_text(keys: list[str]) -> str:
    shown = ", ".join(repr(k) for k in keys[:_MAX_KEYS_SHOWN])
    more = len(keys) - _MAX_KEYS_SHOWN
    return shown + (f", ... and {more} more" if more > 0 else "")


def _open_safetensors(path: Path) -> Any:
    from safetensors import safe_open

    try:
        return safe_open(str(path), framework="pt")
    except OSError as exc:
        raise LoralabError(f"input file {str(path)!r} cannot be read: "
                           f"{exc.strerror or exc}") from None
    except Exception as exc:  # SafetensorError and header parse errors
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LoralabError(f"input file {str(path)!r} is not a valid safetensors file "
                           f"({msg})") from None


def list_keys(path: str | os.PathLike[str]) -> list[str]:
    """The tensor names in a ``.safetensors`` or ``.gguf`` file (``[]`` for ``.npy``)."""
    path = Path(path)
    fmt = _format(path)
    if fmt == ".npy":
        return []
    if fmt == ".gguf":
        from ..fileio.gguf import open_gguf

        return sorted(t.name for t in open_gguf(path, what="input file").tensors)
    with _open_safetensors(path) as fh:
        return sorted(fh.keys())


def _load_npy(path: Path, key: str | None) -> Any:
    import numpy as np

    if key is not None:
        raise LoralabError(f"input file {str(path)!r} is .npy and holds one array; drop "
                           f"':{key}' (keys are for .safetensors files)")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except OSError as exc:
        raise LoralabError(f"input file {str(path)!r} cannot be read: "
                           f"{exc.strerror or exc}") from None
    if magic != b"\x93NUMPY":                     # np.load would take it for a pickle
        raise LoralabError(f"input file {str(path)!r} is not a valid .npy file "
                           "(no NUMPY header)")
    try:
        arr = np.load(path, allow_pickle=False)
    except OSError as exc:
        raise LoralabError(f"input file {str(path)!r} cannot be read: "
                           f"{exc.strerror or exc}") from None
    except ValueError as exc:
        if "pickle" in str(exc):
            raise LoralabError(f"input file {str(path)!r} holds Python objects (pickle), which "
                               "loralab never loads; save a numeric array") from None
        raise LoralabError(f"input file {str(path)!r} is not a valid .npy file") from None
    except Exception:  # numpy raises several types for corrupt headers
        raise LoralabError(f"input file {str(path)!r} is not a valid .npy file") from None
    if not isinstance(arr, np.ndarray):
        raise LoralabError(f"input file {str(path)!r} is not a .npy array file")
    if arr.dtype.kind not in "biuf":
        raise LoralabError(f"input file {str(path)!r} holds dtype {arr.dtype}; only real "
                           "numbers (float, int, bool) are allowed")
    return arr


def _load_safetensors(path: Path, key: str | None) -> tuple[str, Any]:
    with _open_safetensors(path) as fh:
        keys = sorted(fh.keys())
        if key is None:
            if len(keys) != 1:
                raise LoralabError(f"input file {str(path)!r} holds {len(keys)} tensors; pick "
                                   f"one with PATH:KEY; keys: {_keys_text(keys) or '(none)'}")
            key = keys[0]
        elif key not in keys:
            raise LoralabError(f"key {key!r} is not in {str(path)!r}; keys: "
                               f"{_keys_text(keys) or '(none)'}")
        shape = tuple(fh.get_slice(key).get_shape())
        if len(shape) != 2:                       # checked before reading the data
            raise LoralabError(f"tensor {key!r} in {str(path)!r} has shape {shape}; only "
                               "2-D matrices (d_out, d_in) are allowed")
        try:
            return key, fh.get_tensor(key)
        except Exception as exc:  # a corrupt data section
            raise LoralabError(f"tensor {key!r} in {str(path)!r} cannot be read ({exc})"
                               ) from None


def _load_gguf(path: Path, key: str | None) -> tuple[str, Any, str]:
    """The 2-D tensor ``key`` of a GGUF file, de-quantized (shape checked before), and its
    storage type (``Q4_1``, ``F32``, ...)."""
    import torch

    from ..fileio.gguf import gguf_tensor, gguf_tensor_shape, open_gguf

    reader = open_gguf(path, what="input file")
    if key is None:
        keys = [t.name for t in reader.tensors if len(t.shape) == 2]
        raise LoralabError(f"input file {str(path)!r} holds {len(reader.tensors)} tensors; pick "
                           f"one with PATH:KEY; 2-D keys: {_keys_text(keys) or '(none)'}")
    stored = "gguf"
    for t in reader.tensors:
        if t.name == key:
            stored = t.tensor_type.name
            if len(t.shape) != 2:
                raise LoralabError(f"tensor {key!r} in {str(path)!r} has shape "
                                   f"{gguf_tensor_shape(t)}; only 2-D matrices (d_out, d_in) "
                                   "are allowed")
    return key, torch.from_numpy(gguf_tensor(reader, key, path)), stored


def load_matrix(spec: str, *, dtype: str = "float32") -> LoadedMatrix:
    """Load ``PATH[:KEY]`` as a finite 2-D ``dtype`` tensor (``float32`` or ``float64``)."""
    import numpy as np
    import torch

    if dtype not in ("float32", "float64"):
        raise LoralabError(f"dtype={dtype!r} is not allowed; choose float32 or float64")
    path, key = parse_spec(spec)
    fmt = _format(path)
    if fmt == ".npy":
        arr = _load_npy(path, key)
        source = str(arr.dtype)
        label = str(path)
        if arr.ndim != 2:
            raise LoralabError(f"input {label!r} has shape {arr.shape}; only 2-D matrices "
                               "(d_out, d_in) are allowed")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            bad = ~np.isfinite(arr)
            row, col = (int(v) for v in np.argwhere(bad)[0])
            raise LoralabError(f"input {label!r} has {int(bad.sum())} NaN/Inf entries (first "
                               f"at row {row}, column {col}); only finite values are allowed")
        wide = arr.dtype if arr.dtype.kind == "f" else np.dtype(np.float64)  # ints: exact
        raw = torch.from_numpy(arr.astype(wide.newbyteorder("=")))  # native order, a copy
    else:
        if fmt == ".gguf":
            key, raw, source = _load_gguf(path, key)
        else:
            key, raw = _load_safetensors(path, key)
            source = str(raw.dtype).removeprefix("torch.")
        label = f"{path}:{key}"
        if raw.is_complex():
            raise LoralabError(f"input {label!r} is complex; only real matrices are allowed")
    advice = "use --dtype float64" if dtype != "float64" else "scale the matrix"
    tensor = checked_cast(raw, getattr(torch, dtype), f"input {label!r}", advice)
    tensor = as_matrix(tensor, name=f"input {label!r}")
    return LoadedMatrix(tensor=tensor, path=str(path), key=key, source_dtype=source)
