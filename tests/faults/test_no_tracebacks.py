"""Class 5: no traceback, whatever the input.

All-zero matrices give finite results (or, for ``fit``, one clear line); numeric flags of
any size are refused at parse time with a line naming the flag; sizes that cannot fit in
memory are refused before allocating, with a line saying what would fit (and that size then
runs); anything unforeseen prints one line and where the full traceback was saved.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import one_error_line
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAST = settings(max_examples=10, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("argv", [
    ["svd", "--input", "z.npy"],
    ["spectrum", "--input", "z.npy"],
    ["heatmap", "--input", "z.npy"],
    ["heatmap", "--hidden-size", "6", "--delta-input", "z.npy"],
    ["heatmap", "--input", "z.npy", "--delta-input", "z.npy"],
])
def test_all_zero_matrices_give_finite_results(run_cli, tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "z.npy", np.zeros((6, 6), dtype=np.float32))
    assert run_cli([*argv, "--ranks", "2", "--out", "o.png", "--json", "o.json"]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err and not re.search(r"\b(inf|nan)\b", out)
    data = json.loads((tmp_path / "o.json").read_text())
    optional = ("eckart_young", "randomized")               # None: not asked for
    assert "null" not in json.dumps({k: v for k, v in data.items() if k not in optional})
    assert (tmp_path / "o.png").read_bytes()[:4] == b"\x89PNG"


def test_fitting_an_all_zero_target_is_one_clear_line(run_cli, tmp_path, capsys):
    np.save(tmp_path / "z.npy", np.zeros((6, 6), dtype=np.float32))
    assert run_cli(["fit", "--input", str(tmp_path / "z.npy"), "--ranks", "2", "--steps", "3",
                    "--out", str(tmp_path / "o.png")]) == 2
    assert "all zeros" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "o.png").exists()


FLAGS = {  # flag -> a command that takes it
    "--hidden-size": "svd", "--in-features": "svd", "--signal-rank": "spectrum",
    "--steps": "fit", "--max-cells": "heatmap", "--seed": "svd", "--ranks": "demo",
}


@FAST
@given(flag=st.sampled_from(sorted(FLAGS)),
       value=st.one_of(st.integers(min_value=10**5, max_value=10**40),
                       st.integers(max_value=-1, min_value=-10**30),
                       st.sampled_from(["1e20", "1e308", "inf", "2**64", "", "0x10"])))
def test_huge_integers_are_refused_at_parse_time_naming_the_flag(run_cli, capsys, tmp_path,
                                                                 no_work, flag, value):
    limit = 2**32 - 1 if flag == "--seed" else 10**6 if flag == "--steps" else 65536
    assume(not (isinstance(value, int) and 0 <= value <= limit))      # in range: not hostile
    code = run_cli([FLAGS[flag], flag, str(value), "--out", str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert code == 2
    line = one_error_line(err)
    assert flag in line or "rank" in line, line
    assert not (tmp_path / "o.png").exists()


def test_heatmap_seed_delta_alpha_zero_is_refused(run_cli, tmp_path, capsys, no_work):
    assert run_cli(["heatmap", "--hidden-size", "8", "--delta-kind", "seed", "--alpha", "0",
                    "--out", str(tmp_path / "h.png")]) == 2
    assert "--alpha" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("cmd", ["svd", "spectrum", "heatmap", "fit", "demo"])
def test_a_size_that_cannot_fit_is_refused_before_allocating_and_the_advice_runs(
        run_cli, tmp_path, capsys, monkeypatch, cmd):
    monkeypatch.setenv("LORALAB_MEMORY_LIMIT", str(20 * 2**20))          # a 20 MiB machine
    extra = {"fit": ["--steps", "2"], "demo": ["--no-pseudo"]}.get(cmd, [])
    argv = [cmd, "--ranks", "2", *extra, "--out", str(tmp_path / "o.png")]
    import loralab.lowrank as lowrank

    calls = []
    real = lowrank.make_matrix
    monkeypatch.setattr(lowrank, "make_matrix", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert run_cli([*argv, "--hidden-size", "1500"]) == 2      # needs ~100 MiB
    line = one_error_line(capsys.readouterr().err)
    assert calls == [] and not (tmp_path / "o.png").exists()
    fits = int(re.search(r"at most --hidden-size ([\d,]+) fits", line).group(1).replace(",", ""))
    assert "out of memory" in line and 16 < fits < 1500
    assert run_cli([*argv, "--hidden-size", str(min(fits, 96))]) == 0
    capsys.readouterr()


def test_an_unforeseen_error_is_one_line_and_a_saved_traceback(run_cli, tmp_path, capsys,
                                                               monkeypatch):
    import loralab.cli.svd as svd

    def broken(args):
        raise RuntimeError("something nobody foresaw\nsecond line")

    monkeypatch.setattr(svd, "run", broken)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    assert run_cli(["svd"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert "internal error (RuntimeError: something nobody foresaw)" in line
    saved = re.search(r"traceback is in (\S+)", line).group(1)
    text = open(saved, encoding="utf-8").read()
    assert saved.startswith(str(tmp_path)) and "Traceback" in text and "second line" in text
    monkeypatch.setenv("LORALAB_DEBUG", "1")
    with pytest.raises(RuntimeError, match="nobody foresaw"):
        run_cli(["svd"])


def test_running_out_of_memory_anyway_is_one_line(run_cli, capsys, monkeypatch):
    import loralab.cli.svd as svd

    def oom(args):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't "
                           "allocate memory: you tried to allocate 400000000000000 bytes.")

    monkeypatch.setattr(svd, "run", oom)
    assert run_cli(["svd"]) == 2
    assert "out of memory" in one_error_line(capsys.readouterr().err)
