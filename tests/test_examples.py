"""The worked examples under examples/ run offline and say what the docs say they say."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_hf_example_trains_saves_loads_into_peft_merges_and_generates(tmp_path: Path) -> None:
    pytest.importorskip("peft")
    pytest.importorskip("tokenizers")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "hf_lora.py")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    losses = [float(v) for v in re.findall(r"step \d+: loss ([\d.]+)", proc.stdout)]
    assert len(losses) == 5 and losses[-1] < losses[0]
    diff = float(re.search(r"max \|Δlogits\| = (\S+)", proc.stdout).group(1))
    assert diff <= 1e-5
    assert "generated:" in proc.stdout


def test_merge_methods_example_prints_every_combination_and_draws(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "merge_methods.py"),
                           "--steps", "3", "--out", "m.png"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = dict(re.findall(r"^(\w+)\s+\d+\s+(\S+)\s+\S+%$", proc.stdout, re.M))
    assert len(rows) == 11 and float(rows["cat"]) < 1e-5 < float(rows["linear"])
    assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
