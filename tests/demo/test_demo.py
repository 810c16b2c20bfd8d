"""The seed demo: its names and defaults, the theory beside its number, Eckart–Young."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from loralab import LoraConfig, pseudo_code, simulate_lora
from loralab.demo import PSEUDO_CODE, run_demo, theory_delta_norm
from loralab.errors import LoralabError

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT.parent / "shared" / "baseline" / "seed_lora_rank_demo.py"


def seed_matrices(d: int, ranks: tuple[int, ...], seed: int):
    """Re-draw the demo's matrices independently: W0, then (B, A) per rank, float32."""
    gen = torch.Generator().manual_seed(seed)
    w0 = torch.randn(d, d, generator=gen).double().numpy()
    pairs = []
    for r in ranks:
        b = torch.randn(d, r, generator=gen).double().numpy()
        a = torch.randn(r, d, generator=gen).double().numpy()
        pairs.append((b, a))
    return w0, pairs


def test_defaults_are_the_seeds():
    cfg = LoraConfig()
    assert (cfg.hidden_size, cfg.rank_candidates, cfg.alpha) == (512, (2, 4, 8, 16, 32), 16.0)


@pytest.mark.parametrize("kwargs, needle", [
    ({"hidden_size": 0}, "hidden_size=0"),
    ({"hidden_size": -3}, "hidden_size=-3"),
    ({"rank_candidates": ()}, "empty"),
    ({"rank_candidates": (2, 0)}, "rank 0"),
    ({"hidden_size": 8, "rank_candidates": (4, 9)}, "rank 9"),
    ({"alpha": float("nan")}, "alpha=nan"),
    ({"alpha": float("inf")}, "alpha=inf"),
])
def test_config_rejects_bad_values(kwargs, needle):
    with pytest.raises(LoralabError, match=re.escape(needle)):
        LoraConfig(**kwargs)


def test_theory_moments_match_monte_carlo():
    """E and Var of ‖BA‖_F² for Gaussian B (d×r), A (r×k), checked by sampling in numpy."""
    d, k, r, n = 6, 5, 3, 40_000
    rng = np.random.default_rng(0)
    b = rng.standard_normal((n, d, r))
    a = rng.standard_normal((n, r, k))
    sq = np.square(b @ a).sum(axis=(1, 2))
    mean, std = theory_delta_norm(d, k, r, alpha=float(r))      # α = r: scaling 1
    # mean is sqrt(E X²) and std is the delta-method std of X = sqrt(X²)
    mean_sq = mean**2
    var_sq = (2 * std * mean) ** 2
    assert abs(sq.mean() - mean_sq) < 4 * math.sqrt(var_sq / n)
    assert sq.var() == pytest.approx(var_sq, rel=0.1)


def test_seed_error_is_delta_norm_and_follows_theory():
    d, ranks = 256, (1, 4, 16, 64)
    for seed in range(5):
        res = run_demo(LoraConfig(d, ranks, 16.0), seed=seed)
        _, pairs = seed_matrices(d, ranks, seed)
        for row, (b, a) in zip(res.rows, pairs, strict=True):
            delta = (16.0 / row.rank) * (b @ a)
            assert row.delta_norm == pytest.approx(np.linalg.norm(delta), rel=1e-4)
            assert abs(row.delta_norm - row.theory) < 5 * row.theory_std
            assert row.theory == pytest.approx(16.0 * d / math.sqrt(row.rank))


def test_optimal_error_is_eckart_young_against_numpy():
    d, ranks = 96, (1, 5, 20, 96)
    res = run_demo(LoraConfig(d, ranks, 4.0), seed=3, dtype="float64")
    w0, _ = seed_matrices(d, ranks, 3)
    u, s, vt = np.linalg.svd(w0)
    for row in res.rows:
        r = row.rank
        w_r = (u[:, :r] * s[:r]) @ vt[:r]                       # best rank-r approximation
        assert row.optimal_error == pytest.approx(np.linalg.norm(w0 - w_r), rel=1e-6, abs=1e-8)
        assert row.optimal_relative == pytest.approx(
            np.linalg.norm(w0 - w_r) / np.linalg.norm(w0), rel=1e-6, abs=1e-8)
        assert row.trainable_params == 2 * d * r and row.full_params == d * d
    assert res.rows[-1].optimal_error < 1e-6                       # full rank: exact


def test_same_seed_same_numbers_and_dtypes_share_matrices():
    cfg = LoraConfig(64, (2, 8), 16.0)
    one, two = run_demo(cfg, seed=7), run_demo(cfg, seed=7)
    assert one.to_dict() == two.to_dict()
    assert run_demo(cfg, seed=8).rows[0].delta_norm != one.rows[0].delta_norm
    f64 = run_demo(cfg, seed=7, dtype="float64")
    for a, b in zip(one.rows, f64.rows, strict=True):
        assert a.delta_norm == pytest.approx(b.delta_norm, rel=1e-5)
    with pytest.raises(LoralabError, match="float16"):
        run_demo(cfg, dtype="float16")  # type: ignore[arg-type]


def test_simulate_lora_prints_and_saves_png(tmp_path, capsys):
    out = tmp_path / "fig.png"
    res = simulate_lora(LoraConfig(32, (2, 4), 16.0), plot_path=out)
    text = capsys.readouterr().out
    assert "‖ΔW‖_F" in text and "How to read this table" in text
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    img = matplotlib.image.imread(out)
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 600
    assert res.plot_path == str(out)


def test_pseudo_code_runs_and_is_lora():
    pseudo_code()  # prints
    ns: dict = {}
    exec(compile(PSEUDO_CODE, "pseudo_code", "exec"), ns)  # our own constant, not user input
    torch.manual_seed(0)
    base = torch.nn.Linear(8, 5)
    layer = ns["LoRALinear"](base, r=2, alpha=4.0)
    x = torch.randn(3, 8)
    assert torch.equal(layer(x), base(x))                      # B = 0 at init
    assert not base.weight.requires_grad
    assert tuple(layer.lora_a.shape) == (2, 8) and tuple(layer.lora_b.shape) == (5, 2)
    with torch.no_grad():
        layer.lora_b.normal_()
    expect = x @ base.weight.T + base.bias + 2.0 * (x @ layer.lora_a.T) @ layer.lora_b.T
    torch.testing.assert_close(layer(x), expect)


@pytest.mark.skipif(not BASELINE.is_file(), reason="the seed baseline is not beside the repo")
def test_numbers_equal_the_seed_scripts(tmp_path):
    """The seed's own script (rebuilt from its doc) is the oracle for the seed's number."""
    out = subprocess.run([sys.executable, str(BASELINE)], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout
    seed_errors = [float(x) for x in re.findall(r"error=([0-9.]+)", out)]
    ours = [row.delta_norm for row in run_demo().rows]
    assert len(seed_errors) == 5
    assert ours == pytest.approx(seed_errors, rel=1e-6)
