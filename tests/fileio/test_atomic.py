"""Atomic writes: a failure leaves the old file (or nothing), never a partial file."""

from __future__ import annotations

import json
import math

import pytest
import torch

from loralab.errors import LoralabError
from loralab.fileio import atomic_dir, atomic_write, atomic_write_json, check_output_dir


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")

    def half(fh):
        fh.write(b"new but")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write(path, half)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_json_handles_tensors_and_non_finite(tmp_path):
    path = atomic_write_json(tmp_path / "x.json",
                             {"t": torch.tensor([1.5, 2.0]), "bad": math.nan, "k": (1, 2)})
    assert json.loads(path.read_text()) == {"t": [1.5, 2.0], "bad": None, "k": [1, 2]}


def test_atomic_dir_replaces_whole_or_nothing(tmp_path):
    final = tmp_path / "site"
    with atomic_dir(final) as tmp:
        (tmp / "index.html").write_text("v1")
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "index.html").write_text("half")
        raise RuntimeError("interrupted")
    assert (final / "index.html").read_text() == "v1"
    with atomic_dir(final) as tmp:
        (tmp / "index.html").write_text("v2")
    assert (final / "index.html").read_text() == "v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]


def test_check_output_dir_messages(tmp_path):
    with pytest.raises(LoralabError, match="does not exist"):
        check_output_dir(tmp_path / "nope")
    (tmp_path / "f").write_text("")
    with pytest.raises(LoralabError, match="is not a folder"):
        check_output_dir(tmp_path / "f")
    made = check_output_dir(tmp_path / "new", create=True)
    assert made.is_dir()
