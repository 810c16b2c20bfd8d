"""Reading a GGUF file safely: its header, its tensor table and one tensor, de-quantized.

GGUF (llama.cpp's format) holds metadata fields and tensors, many of them quantized in blocks
(Q4_1, Q8_0, ...). The ``gguf`` package parses it by memory-mapping the file. This module is
the one place loralab opens one, so every caller gets the same checks, each a
:class:`~loralab.errors.LoralabError` naming the file: not a regular file, not GGUF (the first
four bytes are not ``GGUF``), a header or tensor table that does not parse, tensor bytes that
lie past the end of the file (a truncated download). A tensor comes back de-quantized to
float32 in PyTorch's order: a weight stored with GGUF shape ``[d_in, d_out]`` (``ne0`` first)
is the ``(d_out, d_in)`` matrix of ``nn.Linear.weight``.

The model loader (:mod:`loralab.lm.gguf`) and the matrix reader of ``svd``/``spectrum``/
``quant`` (:mod:`loralab.lowrank.matrixio`, ``--input FILE.gguf:KEY``) both read through it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import LoralabError
from .atomic import check_input_file

__all__ = ["GGUF_MAGIC", "GGUF_PACKAGE_HINT", "gguf_field", "gguf_tensor", "gguf_tensor_shape",
           "open_gguf"]

GGUF_MAGIC = b"GGUF"
GGUF_PACKAGE_HINT = 'pip install "loralab[gguf]"'


def _gguf() -> Any:
    try:
        import gguf
    except ImportError:
        raise LoralabError("reading a GGUF file needs the package gguf, which is not "
                           f"installed; {GGUF_PACKAGE_HINT}") from None
    return gguf


def open_gguf(path: str | os.PathLike[str], *, what: str = "GGUF file") -> Any:
    """A checked ``gguf.GGUFReader`` of ``path`` (nothing de-quantized): a regular file that
    starts with ``GGUF``, whose header and tensor table parse and whose tensors all lie inside
    the file."""
    file = check_input_file(path, what=what)
    with open(file, "rb") as fh:
        magic = fh.read(4)
    if magic != GGUF_MAGIC:
        raise LoralabError(f"{what} {str(file)!r} is not a GGUF file (it starts with "
                           f"{magic!r}; a GGUF file starts with b'GGUF')")
    gguf = _gguf()
    size = file.stat().st_size
    try:
        reader = gguf.GGUFReader(str(file))
        tensors = list(reader.tensors)
        end = max((int(t.data_offset) + int(t.n_bytes) for t in tensors), default=0)
    except Exception as exc:       # noqa: BLE001 (gguf raises ValueError, KeyError, IndexError…)
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise LoralabError(f"{what} {str(file)!r} is truncated or corrupt: its header or tensor "
                           f"table cannot be read ({first}); download it again") from None
    if end > size or not tensors:
        raise LoralabError(f"{what} {str(file)!r} is truncated or corrupt: its tensors need "
                           f"{end:,} bytes, the file has {size:,}; download it again")
    return reader


def gguf_field(reader: Any, name: str) -> str | None:
    """A string metadata field (``general.architecture``), or ``None`` when absent."""
    field = reader.fields.get(name)
    if field is None or not field.data:
        return None
    try:
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    except (IndexError, TypeError, UnicodeDecodeError):
        return None


def gguf_tensor_shape(tensor: Any) -> tuple[int, ...]:
    """The tensor's shape in PyTorch's order (GGUF lists ``ne0`` first: reversed)."""
    return tuple(int(n) for n in reversed(list(tensor.shape)))


def gguf_tensor(reader: Any, key: str, path: str | os.PathLike[str] = "") -> Any:
    """Tensor ``key`` de-quantized to a float32 numpy array in PyTorch's order; a missing key
    lists the keys."""
    import numpy as np

    gguf = _gguf()
    by_name = {t.name: t for t in reader.tensors}
    if key not in by_name:
        keys = list(by_name)
        shown = ", ".join(repr(k) for k in keys[:20]) + (
            f", ... and {len(keys) - 20} more" if len(keys) > 20 else "")
        raise LoralabError(f"key {key!r} is not in {str(Path(path))!r}; keys: {shown}")
    t = by_name[key]
    try:
        data = gguf.dequantize(t.data, t.tensor_type)
    except Exception as exc:       # noqa: BLE001 (an unknown or corrupt block type)
        raise LoralabError(f"tensor {key!r} in {str(Path(path))!r} ({t.tensor_type.name}) "
                           f"cannot be de-quantized ({type(exc).__name__}: {exc})") from None
    return np.array(data, dtype=np.float32).reshape(gguf_tensor_shape(t))   # a writable copy
