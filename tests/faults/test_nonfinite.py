"""Class 2: non-finite numbers are never printed or saved as results.

Inputs near the top (or bottom) of the float range, and numeric flags of any size, give
either finite tables and JSON (exit 0) or one ``error: overflow``/``underflow``/range line
(exit 2) that writes nothing; never ``inf``/``nan`` in a table, never ``null`` in the JSON.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import one_error_line
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loralab.errors import LoralabError

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAST = settings(max_examples=6, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
NON_FINITE = re.compile(r"(?<![\w.])(-?inf|nan)(?![\w])", re.IGNORECASE)
COMMANDS = {
    "svd": [],
    "spectrum": [],
    "heatmap": [],
    "fit": ["--steps", "3"],
}


def _nulls(obj, path="") -> list[str]:
    if obj is None:
        return [path]
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _nulls(v, f"{path}.{k}")]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in _nulls(v, f"{path}[{i}]")]
    return []


# JSON fields that are None by design: not measured, or undefined (a ratio over a zero floor).
OPTIONAL = re.compile(r"\.(eckart_young|randomized|similarity|ratio|spectral|spectral_diff|"
                      r"max_spectral_diff)$")


def check_run(run_cli, capsys, argv: list[str], folder: Path) -> int:
    """Run ``argv`` in ``folder``; assert the outcome is finite numbers or one clean error."""
    before = sorted(p.name for p in folder.iterdir())
    code = run_cli(argv)
    out, err = capsys.readouterr()
    if code == 0:
        assert not NON_FINITE.search(out), out
        data = json.loads((folder / "o.json").read_text())
        assert [p for p in _nulls(data) if not OPTIONAL.search(p)] == []
        assert (folder / "o.png").read_bytes()[:4] == b"\x89PNG"
    else:
        assert code == 2, err
        line = one_error_line(err)
        assert re.search(r"overflow|underflow|not allowed|all zeros|diverged", line), line
        assert sorted(p.name for p in folder.iterdir()) == before     # nothing written
    return code


@FAST
@given(scale=st.sampled_from([1e-30, 1e-20, 1e15, 1e17, 1e30, 3e38]),
       cmd=st.sampled_from(sorted(COMMANDS)), seed=st.integers(0, 3))
def test_float32_inputs_near_the_range_limits(run_cli, capsys, monkeypatch, scale, cmd, seed):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        monkeypatch.chdir(folder)
        w = (np.random.default_rng(seed).standard_normal((6, 5)) * scale).astype(np.float32)
        assert np.isfinite(w).all()
        np.save(folder / "w.npy", w)
        code = check_run(run_cli, capsys, [cmd, "--input", "w.npy", "--ranks", "2",
                                           *COMMANDS[cmd], "--out", "o.png", "--json", "o.json"],
                         folder)
        if scale >= 1e30 or scale <= 1e-20:      # these can only be refused in float32
            assert code == 2


@FAST
@given(flag=st.sampled_from(["--alpha", "--noise", "--delta-scale", "--lr"]),
       value=st.sampled_from(["1e30", "1e308", "-1", "0", "nan", "-inf", "1e6", "3.5"]))
def test_numeric_flags_of_any_size(run_cli, capsys, monkeypatch, flag, value):
    cmd = {"--alpha": "svd", "--noise": "spectrum", "--delta-scale": "heatmap",
           "--lr": "fit"}[flag]
    with tempfile.TemporaryDirectory() as tmp:
        monkeypatch.chdir(tmp)
        check_run(run_cli, capsys, [cmd, "--hidden-size", "8", "--ranks", "2", flag, value,
                                    *COMMANDS[cmd], "--out", "o.png", "--json", "o.json"],
                  Path(tmp))


def test_demo_alpha_that_overflowed_is_refused_not_printed(run_cli, tmp_path, capsys):
    """`demo --alpha 1e30` printed `inf`: now refused at parse time, and the library's
    run_demo refuses an overflowing result with 'overflow' rather than returning inf."""
    from loralab.demo import LoraConfig, run_demo

    assert run_cli(["demo", "--hidden-size", "16", "--ranks", "2", "--alpha", "1e30",
                    "--no-pseudo", "--out", str(tmp_path / "d.png")]) == 2
    assert "--alpha" in one_error_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(LoralabError, match="overflow"):
        run_demo(LoraConfig(hidden_size=16, rank_candidates=(2,), alpha=1e30))
    ok = run_demo(LoraConfig(hidden_size=16, rank_candidates=(2,), alpha=1e30), dtype="float64")
    assert all(math.isfinite(r.delta_norm) and math.isfinite(r.theory) for r in ok.rows)


def test_theory_and_random_baseline_scale_linearly_without_overflow():
    from loralab.lowrank import random_ba_errors
    from loralab.lowrank.theory import theory_delta_norm

    mean, std = theory_delta_norm(64, 64, 4, 1e200)
    ref_mean, ref_std = theory_delta_norm(64, 64, 4, 1.0)
    assert mean == pytest.approx(1e200 * ref_mean) and std == pytest.approx(1e200 * ref_std)
    rows = random_ba_errors((8, 8), [2], alpha=1e200)
    assert math.isfinite(rows[0].delta_norm) and math.isfinite(rows[0].theory_std)


def test_library_refuses_a_matrix_whose_norm_overflows():
    import torch

    from loralab.lowrank import svd_sweep

    w = torch.full((4, 4), 3e38)
    with pytest.raises(LoralabError, match="overflow.*float64"):
        svd_sweep(w, [1])
    assert svd_sweep(w.double(), [1]).frobenius_norm == pytest.approx(4 * 3e38)
    with pytest.raises(LoralabError, match="underflow"):
        svd_sweep(torch.full((4, 4), 1e-30), [1])
