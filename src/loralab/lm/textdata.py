"""The user's text for the fine-tuning experiment: ``--data`` -> train/validation token streams.

``load_text(spec)`` reads one of

* a UTF-8 ``.txt`` file: its units are **paragraphs** (blocks of non-blank lines separated
  by blank lines) when it has at least :data:`MIN_PARAGRAPHS` of them, else **lines**;
* a folder: every ``.txt`` file under it (recursively, hidden files and folders skipped,
  sorted by relative path) is one **document**;
* a ``.jsonl`` file: the string ``text`` field of each non-blank line is one **document**;
* ``builtin:NAME``: one of :data:`BUILTIN_TEXTS` (a ``.txt`` file shipped in ``texts/``).

The split is by unit, seeded and stable: each distinct unit text gets the key
``sha256(f"{seed}:{text}")``; the ``k = max(1, round(val_fraction * n_distinct))`` distinct
texts with the smallest keys are validation, every other unit is train. Identical units
therefore always fall on the same side, so no validation text is ever trained on, and adding
a unit to the data moves no other unit across the split. Both splits keep the order of the
data. :func:`corpus_data` joins each split's units with ``\\n`` into one token stream.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import torch

from ..choices import BUILTIN_TEXTS
from ..errors import LoralabError
from ..fileio import check_input_file
from .bytes import decode_utf8
from .corpus import LMData

__all__ = [
    "BUILTIN_TEXTS",
    "MIN_PARAGRAPHS",
    "TextCorpus",
    "TokenCounts",
    "Tokenizer",
    "Unit",
    "check_data",
    "corpus_data",
    "load_text",
    "split_units",
    "token_counts",
]

Unit = Literal["line", "paragraph", "document"]

MIN_PARAGRAPHS = 10
_TEXTS = Path(__file__).resolve().parent / "texts"
_ALLOWED = ("a UTF-8 .txt file, a folder of .txt files, a .jsonl file with a string \"text\" "
            "field per line, or builtin:NAME (" + ", ".join(BUILTIN_TEXTS) + ")")
_BLANK = re.compile(r"\n{2,}")  # after _normalize, a blank line is empty
_JSON_KIND = {list: "array", str: "string", int: "number", float: "number", bool: "boolean",
              type(None): "null"}


class Tokenizer(Protocol):
    """What :func:`corpus_data` needs of a tokenizer (``CharTokenizer``, ``ByteTokenizer``)."""

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int] | torch.Tensor) -> str: ...


@dataclass(frozen=True)
class TextCorpus:
    """A user's text split into train and validation units (see the module docstring).

    Attributes:
        name: the spec as given (``"notes.txt"``, ``"builtin:lunyu"``).
        source: what was read: the absolute path of the file or folder.
        unit: what one element of ``train_docs`` / ``val_docs`` is.
        train_docs: the train units, in the order of the data.
        val_docs: the validation units, in the order of the data; none of them is in train.
        sha256: hex digest of ``unit``, ``train_docs`` and ``val_docs``: the same digest means
            the same token streams for a given tokenizer (a cache key with the tokenizer).
        val_fraction, seed: the split's parameters.
        n_files: files read (1 for a ``.txt`` or ``.jsonl``).
    """

    name: str
    source: str
    unit: Unit
    train_docs: list[str]
    val_docs: list[str]
    sha256: str
    val_fraction: float
    seed: int
    n_files: int = 1

    @property
    def n_train(self) -> int:
        """Number of train units."""
        return len(self.train_docs)

    @property
    def n_val(self) -> int:
        """Number of validation units."""
        return len(self.val_docs)

    @property
    def n_units(self) -> int:
        """Number of units read (train + validation)."""
        return self.n_train + self.n_val


@dataclass(frozen=True)
class TokenCounts:
    """Sizes of the two token streams (each split's units joined by ``\\n``, one more ``\\n``
    at the end) and how many units went into each."""

    train_tokens: int
    val_tokens: int
    train_units: int
    val_units: int

    def summary(self, unit: str = "unit") -> str:
        """``"train 1,234 tokens (90 lines), validation 140 tokens (10 lines)"``."""
        return (f"train {self.train_tokens:,} tokens ({self.train_units:,} {unit}s), "
                f"validation {self.val_tokens:,} tokens ({self.val_units:,} {unit}s)")


def load_text(spec: str | os.PathLike[str], *, val_fraction: float = 0.1,
              seed: int = 0) -> TextCorpus:
    """Read ``spec`` (see the module docstring) and split it into train/validation units.

    Raises ``LoralabError`` (naming the value and what is allowed) for a path that does not
    exist, an unsupported suffix, an empty file or folder, a binary or non-UTF-8 file, a bad
    ``.jsonl`` line, an unknown built-in name, ``val_fraction`` outside ``(0, 1)`` or fewer
    than 2 distinct units. Sizes in tokens are checked by :func:`check_data`.
    """
    if (isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float))
            or not 0.0 < val_fraction < 1.0):
        raise LoralabError(f"val_fraction={val_fraction!r} is not allowed; it must be "
                           "between 0 and 1 (exclusive)")
    name = os.fspath(spec)
    source, unit, units, n_files = _read(name)
    train, val = split_units(units, val_fraction=val_fraction, seed=seed, what=name, unit=unit)
    return TextCorpus(name=name, source=source, unit=unit, train_docs=train, val_docs=val,
                      sha256=_digest(unit, train, val), val_fraction=val_fraction, seed=seed,
                      n_files=n_files)


def split_units(units: list[str], *, val_fraction: float, seed: int, what: str = "the data",
                unit: str = "unit") -> tuple[list[str], list[str]]:
    """``units`` -> ``(train, val)``, each in the order of ``units`` (rule: module docstring).

    Every copy of a validation text is in ``val``, none in ``train``. Raises
    ``LoralabError`` when ``units`` holds fewer than 2 distinct texts.
    """
    distinct = list(dict.fromkeys(units))
    if len(distinct) < 2:
        raise LoralabError(f"{what!r} has {len(distinct)} distinct {unit}(s); a train/"
                           "validation split needs at least 2: give more text")
    k = min(len(distinct) - 1, max(1, round(val_fraction * len(distinct))))
    keyed = sorted(distinct, key=lambda t: hashlib.sha256(f"{seed}:{t}".encode()).digest())
    held = set(keyed[:k])
    return [u for u in units if u not in held], [u for u in units if u in held]


def _digest(unit: str, train: list[str], val: list[str]) -> str:
    h = hashlib.sha256(f"loralab-text-v1\0{unit}\0".encode())
    for tag, docs in ((b"T", train), (b"V", val)):
        for doc in docs:
            raw = doc.encode("utf-8")
            h.update(tag + len(raw).to_bytes(8, "little") + raw)
    return h.hexdigest()


def _read(spec: str) -> tuple[str, Unit, list[str], int]:
    """``spec`` -> ``(source, unit, units, n_files)``; every check of the input's form."""
    if spec.startswith("builtin:"):
        key = spec[len("builtin:"):]
        if key not in BUILTIN_TEXTS:
            raise LoralabError(f"unknown built-in text {spec!r}; choose one of "
                               + ", ".join(f"builtin:{n}" for n in BUILTIN_TEXTS))
        path = _TEXTS / f"{key}.txt"
        unit, units = _txt_units(decode_utf8(path.read_bytes(), spec), spec)
        return str(path), unit, units, 1
    if not spec:
        raise LoralabError(f"data '' is empty; give {_ALLOWED}")
    path = Path(spec).expanduser()
    if not path.exists():
        raise LoralabError(f"data {spec!r} does not exist; give {_ALLOWED}")
    if path.is_dir():
        docs, n_files = _folder_docs(path, spec)
        return str(path.resolve()), "document", docs, n_files
    suffix = path.suffix.lower()
    if suffix not in (".txt", ".jsonl"):
        raise LoralabError(f"data {spec!r} has the suffix {path.suffix or '(none)'!r}, which is "
                           f"not supported; give {_ALLOWED}")
    raw = check_input_file(path, what="data file").read_bytes()
    if not raw.strip():
        raise LoralabError(f"data file {spec!r} is empty (no text, or only white space); "
                           "give a file with text in it")
    text = decode_utf8(raw, spec)
    if suffix == ".jsonl":
        return str(path.resolve()), "document", _jsonl_docs(text, spec), 1
    unit, units = _txt_units(text, spec)
    return str(path.resolve()), unit, units, 1


def _normalize(text: str) -> str:
    """Newlines to ``\\n``, trailing spaces of each line and blank lines at both ends off."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


def _txt_units(text: str, name: str) -> tuple[Unit, list[str]]:
    """One ``.txt`` file's units: paragraphs if it has ``MIN_PARAGRAPHS`` of them, else lines."""
    text = _normalize(text)
    if not text.strip():
        raise LoralabError(f"data file {name!r} holds only white space; give a file with text")
    paragraphs = [p for p in _BLANK.split(text) if p.strip()]
    if len(paragraphs) >= MIN_PARAGRAPHS:
        return "paragraph", paragraphs
    return "line", [line for line in text.split("\n") if line.strip()]


def _jsonl_docs(text: str, name: str) -> list[str]:
    """The string ``text`` field of each non-blank line (1-based line numbers in errors)."""
    docs = []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LoralabError(f"{name!r} line {n} is not JSON ({exc.msg} at column "
                               f"{exc.colno}); each line must be a JSON object with a string "
                               '"text" field') from None
        value = record.get("text") if isinstance(record, dict) else None
        if not isinstance(value, str):
            got = (f"keys: {', '.join(map(repr, record)) or 'none'}" if isinstance(record, dict)
                   else f"a JSON {_JSON_KIND.get(type(record), 'value')}")
            raise LoralabError(f"{name!r} line {n} has no string \"text\" field ({got}); "
                               'each line must be a JSON object with a string "text" field')
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise LoralabError(f"{name!r} line {n}: \"text\" holds a lone surrogate "
                               f"{value[exc.start]!r} at index {exc.start}, not valid "
                               "Unicode") from None
        value = _normalize(value)
        if value.strip():
            docs.append(value)
    if not docs:
        raise LoralabError(f"data file {name!r} holds no non-empty \"text\"; give one JSON "
                           'object with a string "text" field per line')
    return docs


def _txt_files(root: Path) -> Iterator[Path]:
    """``.txt`` files under ``root``, recursively, hidden names skipped, links not followed
    into folders, sorted by relative path."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(folder, f) for f in files
                  if f.lower().endswith(".txt") and not f.startswith(".")]
    yield from sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _folder_docs(root: Path, spec: str) -> tuple[list[str], int]:
    """Each non-empty ``.txt`` file under ``root`` is one document (checked as UTF-8 text)."""
    docs, n_files = [], 0
    for path in _txt_files(root):
        n_files += 1
        raw = check_input_file(path, what="data file").read_bytes()
        text = _normalize(decode_utf8(raw, str(path)))
        if text.strip():
            docs.append(text)
    if n_files == 0:
        raise LoralabError(f"data folder {spec!r} holds no .txt file (searched recursively); "
                           f"give {_ALLOWED}")
    if not docs:
        raise LoralabError(f"data folder {spec!r}: all {n_files} .txt file(s) are empty")
    return docs, n_files


def _streams(corpus: TextCorpus, tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
    """The train and validation token streams: units joined by ``\\n``, a final ``\\n``."""
    return (tokenizer.encode("\n".join(corpus.train_docs) + "\n"),
            tokenizer.encode("\n".join(corpus.val_docs) + "\n"))


def _check_sizes(corpus: TextCorpus, n_train: int, n_val: int, block_size: int) -> None:
    need = block_size + 2
    total, unit = n_train + n_val, corpus.unit
    if total < need:
        raise LoralabError(
            f"data {corpus.name!r} is {total:,} tokens ({corpus.n_units:,} {unit}s), shorter "
            f"than one training block: block_size + 2 = {need} tokens; give at least "
            f"{2 * need:,} tokens of text (a block for train and one for validation)")
    if n_train < need:
        raise LoralabError(
            f"data {corpus.name!r}: the train split is {n_train:,} tokens "
            f"({corpus.n_train:,} {unit}s), shorter than one training block of "
            f"block_size + 2 = {need} tokens; lower val_fraction (now {corpus.val_fraction}) "
            "or give more text")
    if n_val < need:
        raise LoralabError(
            f"data {corpus.name!r} is too short to hold out a validation split: "
            f"{corpus.n_val:,} of its {corpus.n_units:,} {unit}s ({n_val:,} tokens) were held "
            f"out and at least block_size + 2 = {need} tokens are needed; raise val_fraction "
            f"(now {corpus.val_fraction}) or give more text")


def _check_block(block_size: int) -> None:
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise LoralabError(f"block_size={block_size!r} is not allowed; it must be an integer "
                           ">= 1")


def check_data(corpus: TextCorpus, tokenizer: Tokenizer, block_size: int) -> TokenCounts:
    """Tokenize both splits and check each holds one block of ``block_size + 2`` tokens.

    Returns the :class:`TokenCounts`; raises ``LoralabError`` (with the counts and what is
    needed) when the text is shorter than one block or its validation split is.
    """
    _check_block(block_size)
    train, val = _streams(corpus, tokenizer)
    _check_sizes(corpus, len(train), len(val), block_size)
    return TokenCounts(len(train), len(val), corpus.n_train, corpus.n_val)


def corpus_data(corpus: TextCorpus, tokenizer: Tokenizer, block_size: int) -> LMData:
    """The :class:`LMData` of ``corpus``: ``train`` ``(N_train,)`` and ``val`` ``(N_val,)``
    long tensors, batches ``(B, T)`` with ``T = block_size``.

    Sizes are checked (as :func:`check_data`) before any tensor is made.
    """
    _check_block(block_size)
    train, val = _streams(corpus, tokenizer)
    _check_sizes(corpus, len(train), len(val), block_size)
    return LMData(torch.tensor(train, dtype=torch.long), torch.tensor(val, dtype=torch.long),
                  block_size, list(corpus.train_docs), list(corpus.val_docs))


def token_counts(data: LMData) -> TokenCounts:
    """The :class:`TokenCounts` of data made by :func:`corpus_data` (no tokenizing)."""
    return TokenCounts(len(data.train), len(data.val), len(data.train_lines),
                       len(data.val_lines))
