"""Files: written whole or not at all, and one rule for every command's outputs.

* :mod:`.atomic`: every artefact (PNG, JSON, safetensors, HTML) goes to a temporary file in
  the destination folder and is renamed into place only once complete, so an interrupted or
  failed run leaves the old file or no file, never a truncated one; the checks every input
  and output path goes through (a FIFO or device is never opened or replaced).
* :mod:`.outputs`: the one rule (see its docstring): outputs of one command never collide, a
  folder output holds only what the same command wrote there (its manifest), the files of an
  earlier run not written again are removed, and a lock keeps two runs apart.
* :mod:`.owned`: which existing files loralab wrote (a record of each file's SHA-256 beside
  it); any other file is replaced only with ``--force``.
* :mod:`.tensors`: a tensor read from a file, checked after the cast to the dtype it is used
  in.
* :mod:`.lock`: the lock file (``O_CREAT | O_EXCL``, held with ``flock``).
"""

from __future__ import annotations

from .atomic import (
    atomic_dir,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
    check_input_file,
    check_output_dir,
    check_output_file,
    find_non_finite,
    require_finite,
    to_jsonable,
)
from .lock import OutputLock
from .outputs import (
    LOCK_NAME,
    MANIFEST_NAME,
    OutputFolder,
    check_distinct,
    check_output_folder,
    output_files,
    output_folder,
    same_file,
)
from .owned import check_replaceable, record_written, written_by_loralab

__all__ = [
    "LOCK_NAME",
    "MANIFEST_NAME",
    "OutputFolder",
    "OutputLock",
    "atomic_dir",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "check_distinct",
    "check_input_file",
    "check_output_dir",
    "check_output_file",
    "check_output_folder",
    "check_replaceable",
    "find_non_finite",
    "output_files",
    "output_folder",
    "record_written",
    "require_finite",
    "same_file",
    "to_jsonable",
    "written_by_loralab",
]
