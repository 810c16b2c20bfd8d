"""loralab.lowrank: Eckart–Young against numpy, the theory, baselines, fits and φ."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from loralab import lowrank as L
from loralab.errors import LoralabError
from loralab.lowrank.theory import (
    gaussian_relative_error,
    gaussian_singular_values,
    mp_density,
    mp_edges,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# float32 SVD is accurate to ~1e-6 of σ_1; errors are compared relative to ‖W‖_F (or σ_1).
TOL = {torch.float32: 2e-5, torch.float64: 1e-11}


def numpy_tail(w: np.ndarray) -> np.ndarray:
    """Oracle: sqrt(Σ_{i>r} σ_i²) for r = 0..k from numpy's float64 SVD."""
    s = np.linalg.svd(w.astype(np.float64), compute_uv=False)
    return np.sqrt(np.concatenate([np.cumsum((s**2)[::-1])[::-1], [0.0]]))


def matrices(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    spec = 10.0 * 0.7 ** np.arange(30)                                 # known spectrum
    return {
        "gaussian": L.gaussian_matrix(60, 40, seed=1, dtype=dtype),
        "wide": L.gaussian_matrix(24, 70, seed=2, dtype=dtype),
        "spectrum": L.matrix_with_spectrum(spec, 50, 45, seed=3, dtype=dtype),
        "lowrank": L.low_rank_plus_noise(64, 48, rank=8, noise=0.05, seed=4, dtype=dtype),
    }


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sweep_matches_numpy_eckart_young(dtype):
    for name, w in matrices(dtype).items():
        k = min(w.shape)
        ranks = sorted({1, 2, 5, k // 2, k - 1, k})
        sweep = L.svd_sweep(w, ranks)
        wn = w.double().numpy()
        norm = np.linalg.norm(wn)
        oracle = numpy_tail(wn)
        u, s, vt = np.linalg.svd(wn, full_matrices=False)
        for i, r in enumerate(ranks):
            assert abs(sweep.optimal_error[i] - oracle[r]) <= TOL[dtype] * norm, name
            resid = wn - (u[:, :r] * s[:r]) @ vt[:r]                  # numpy's own W − W_r
            assert abs(sweep.optimal_error[i] - np.linalg.norm(resid)) <= TOL[dtype] * norm
            spec = np.linalg.norm(resid, 2) if r < k else 0.0
            assert abs(sweep.spectral_error[i] - spec) <= TOL[dtype] * s[0], name
            assert sweep.relative_error[i] == pytest.approx(
                sweep.optimal_error[i] / sweep.frobenius_norm, rel=1e-12, abs=1e-15)
        assert sweep.frobenius_norm == pytest.approx(norm, rel=TOL[dtype])


def test_constructed_spectrum_is_recovered():
    s = np.array([9.0, 5.0, 5.0, 2.0, 0.5, 0.1])
    w = L.matrix_with_spectrum(s, 20, 12, seed=0, dtype="float64")
    sweep = L.svd_sweep(w, [1, 3, 6, 12])
    np.testing.assert_allclose(sweep.singular_values[:6], s, rtol=1e-12)
    np.testing.assert_allclose(sweep.singular_values[6:], 0.0, atol=1e-12)
    expected = [math.sqrt(np.sum(s[r:] ** 2)) for r in (1, 3, 6, 12)]
    np.testing.assert_allclose(sweep.optimal_error, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sweep.spectral_error, [5.0, 2.0, 0.0, 0.0], atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_explicit_check_agrees_with_formulas(dtype):
    for name, w in matrices(dtype).items():
        ranks = [1, 3, min(w.shape)]
        check = L.eckart_young_check(w, ranks)
        assert check.max_frobenius_diff <= TOL[dtype], name
        assert check.max_spectral_diff <= 5 * TOL[dtype], name
        assert [row.rank for row in check.rows] == ranks


def test_no_rank_r_matrix_beats_the_truncated_svd():
    w = L.low_rank_plus_noise(40, 30, rank=6, noise=0.2, seed=5, dtype="float64")
    sweep = L.svd_sweep(w, [3])
    gen = torch.Generator().manual_seed(0)
    u, s, vh = torch.linalg.svd(w)
    f64 = torch.float64
    for _ in range(20):          # random and perturbed-optimal rank-3 candidates
        x = torch.randn(40, 3, generator=gen, dtype=f64) @ torch.randn(3, 30, generator=gen,
                                                                        dtype=f64)
        y = (u[:, :3] + 0.05 * torch.randn(40, 3, generator=gen, dtype=f64)) * s[:3] @ vh[:3]
        for cand in (x, y):
            assert float(torch.linalg.norm(w - cand)) >= sweep.optimal_error[0] * (1 - 1e-12)


def test_analysis_uses_one_svd_and_does_not_mutate():
    w = L.gaussian_matrix(30, 20, seed=0)
    before = w.clone()
    a = L.analyze_svd(w, [2, 4], gaussian=True, randomized=True)
    assert torch.equal(w, before)
    d = a.to_dict()
    assert {"ranks", "singular_values", "optimal_error", "random_error"} <= set(d)
    assert d["ranks"] == [2, 4] and len(d["singular_values"]) == 20
    assert len(d["gaussian_theory_optimal_error"]) == 2
    assert d["eckart_young"]["max_frobenius_diff"] < 1e-5


def test_randomized_sweep_is_close_on_a_decaying_spectrum_and_keeps_global_rng():
    # Ranks inside the signal: the tail ‖W‖² − Σ_{i≤r} σ̂_i² is then not a float32 cancellation.
    w = L.low_rank_plus_noise(200, 150, rank=10, noise=0.1, seed=6)
    state = torch.get_rng_state()
    approx = L.randomized_sweep(w, [2, 5, 8], seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    again = L.randomized_sweep(w, [2, 5, 8], seed=3)
    assert approx.optimal_error == again.optimal_error
    cmp = L.compare_sweeps(L.svd_sweep(w, [2, 5, 8]), approx)
    assert cmp.max_optimal_rel_diff < 1e-4
    assert cmp.max_singular_value_rel_diff < 1e-4
    assert approx.method == "randomized" and len(approx.singular_values) == 18


def test_random_baseline_equals_the_explicit_product_and_the_demo():
    from loralab.demo import LoraConfig, run_demo

    rows = L.random_ba_errors((30, 20), [1, 3, 7], alpha=8.0, seed=9)
    gen = torch.Generator().manual_seed(9)
    for row in rows:
        b = torch.randn(30, row.rank, generator=gen)
        a = torch.randn(row.rank, 20, generator=gen)
        explicit = float(torch.linalg.norm((8.0 / row.rank) * (b.double() @ a.double())))
        assert row.delta_norm == pytest.approx(explicit, rel=1e-10)
    # Same generator after W0, as the seed does: the demo's numbers.
    gen = torch.Generator().manual_seed(42)
    L.gaussian_matrix(48, 48, seed=gen)
    rows = L.random_ba_errors((48, 48), [2, 4], alpha=16.0, seed=gen)
    demo = run_demo(LoraConfig(hidden_size=48, rank_candidates=(2, 4)), seed=42)
    for row, ref in zip(rows, demo.rows, strict=True):
        assert row.delta_norm == pytest.approx(ref.delta_norm, rel=1e-4)
        assert row.theory == pytest.approx(ref.theory)


def test_energy_ranks_against_a_loop():
    s = np.array([5.0, 3.0, 2.0, 1.0, 1.0, 0.5, 0.1])
    e = s**2
    expected = {}
    for f in (0.5, 0.9, 0.99):
        acc = 0.0
        for i, v in enumerate(e, 1):
            acc += v
            if acc >= f * e.sum():
                expected[f"{f * 100:g}%"] = i
                break
    assert L.energy_ranks(s) == expected
    assert L.energy_ranks([1.0, 1.0]) == {"50%": 1, "90%": 2, "99%": 2}
    sp = L.spectrum(L.matrix_with_spectrum(s, 9, 8, dtype="float64"))
    assert sp.energy_ranks == expected
    assert sp.cumulative_energy[-1] == pytest.approx(1.0)


def test_marchenko_pastur_edges_at_d_512():
    for m, n in ((512, 512), (1024, 512)):
        s = torch.linalg.svdvals(L.gaussian_matrix(m, n, seed=11)).double().numpy()
        lo, hi = mp_edges(m, n)
        assert s[0] == pytest.approx(hi, rel=0.02)
        if m != n:
            assert s[-1] == pytest.approx(lo, rel=0.05)
        else:
            assert s[-1] < 0.01 * hi                       # the square case reaches 0
        theory = gaussian_singular_values(m, n)
        assert np.max(np.abs(s - theory)) < 0.03 * hi      # the whole spectrum, not just edges
        rel = gaussian_relative_error(m, n)
        assert np.max(np.abs(rel - numpy_tail(np.diag(s)) / np.linalg.norm(s))) < 0.01


def test_mp_density_is_normalised_and_quarter_circle_when_square():
    for c in (1.0, 0.5, 0.1):
        x = np.linspace(0, 1 + math.sqrt(c), 200001)
        assert np.trapezoid(mp_density(x, c), x) == pytest.approx(1.0, abs=2e-3)
        assert np.trapezoid(x**2 * mp_density(x, c), x) == pytest.approx(1.0, abs=2e-3)
    x = np.linspace(0, 2, 11)
    np.testing.assert_allclose(mp_density(x, 1.0), np.sqrt(4 - x**2) / np.pi, atol=1e-12)


@pytest.mark.parametrize("bad, needle", [
    (torch.zeros(3), "2-D"),
    (torch.zeros(2, 3, 4), "2-D"),
    (torch.zeros(0, 3), "empty"),
    (torch.tensor([[1.0, float("nan")], [0.0, float("inf")]]), "2 NaN/Inf"),
    (torch.zeros(2, 2, dtype=torch.complex64), "complex"),
])
def test_bad_matrices(bad, needle):
    with pytest.raises(LoralabError, match=needle):
        L.svd_sweep(bad, [1])


@pytest.mark.parametrize("ranks, needle", [([0], "rank 0"), ([7], "rank 7"), ([], "no rank"),
                                           ([2.5], "integers")])
def test_bad_ranks(ranks, needle):
    with pytest.raises(LoralabError, match=needle):
        L.svd_sweep(torch.ones(6, 9), ranks)


def test_generated_matrices():
    s = L.decaying_spectrum(8, 20, 30)
    assert float(s.square().sum()) == pytest.approx(600.0)
    assert float(s[-1] / s[0]) == pytest.approx(0.1)
    w = L.low_rank_plus_noise(20, 30, rank=8, noise=0.0, seed=0, dtype="float64")
    assert int(torch.linalg.matrix_rank(w)) == 8
    assert torch.equal(L.gaussian_matrix(5, 4, seed=3), L.gaussian_matrix(5, 4, seed=3))
    with pytest.raises(LoralabError, match="signal rank"):
        L.low_rank_plus_noise(4, 4, rank=5)


def test_fit_converges_to_the_floor():
    w = L.low_rank_plus_noise(64, 48, rank=8, noise=0.1, seed=0)
    result = L.fit_lowrank(w, [2, 4, 8], steps=400, seed=1)
    for fit in result.fits:
        assert fit.history[0] == pytest.approx(float(torch.linalg.norm(w.double())), rel=1e-5)
        assert fit.ratio >= 1 - 1e-6                      # nothing beats Eckart–Young
        assert fit.ratio <= 1.01
        assert fit.learned_error == pytest.approx(
            float(torch.linalg.norm(w.double() - (16.0 / fit.rank) * fit.b.double()
                                    @ fit.a.double())), rel=1e-6)
        assert fit.b.shape == (64, fit.rank) and fit.a.shape == (fit.rank, 48)
    d = result.to_dict()
    assert [f["rank"] for f in d["fits"]] == [2, 4, 8]
    assert {"rank", "learned_error", "optimal_error", "steps"} <= set(d["fits"][0])
    assert d["similarity"]["rank_1"] == 4 and d["similarity"]["rank_2"] == 8


def test_fit_starts_from_lora_init_and_is_deterministic():
    w = L.gaussian_matrix(20, 12, seed=0)
    f1 = L.fit_rank(w, 3, steps=5, seed=7)
    f2 = L.fit_rank(w, 3, steps=5, seed=7)
    assert f1.history == f2.history
    assert float(f1.a_init.abs().max()) <= 1 / math.sqrt(12)      # Kaiming bound 1/√d_in
    with pytest.raises(LoralabError, match="steps"):
        L.fit_rank(w, 3, steps=0)
    with pytest.raises(LoralabError, match="compare"):
        L.fit_lowrank(w, [2, 3], steps=1, compare=(2, 5))


def numpy_phi(a1: np.ndarray, a2: np.ndarray, i: int, j: int) -> float:
    """Oracle: the LoRA paper's formula written out with numpy."""
    u1 = np.linalg.svd(a1, full_matrices=False)[2][:i].T       # (n, i) top-i right sing. vecs
    u2 = np.linalg.svd(a2, full_matrices=False)[2][:j].T
    return float(np.linalg.norm(u1.T @ u2) ** 2 / min(i, j))


def test_subspace_similarity():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(6, 40, generator=gen, dtype=torch.float64)
    assert torch.allclose(L.subspace_similarity(a, a), torch.ones(6, 6, dtype=torch.float64))
    mix = torch.randn(6, 6, generator=gen, dtype=torch.float64)      # same row space
    assert L.phi(a, mix @ a, 6, 6) == pytest.approx(1.0)
    b = torch.randn(9, 40, generator=gen, dtype=torch.float64)
    sim = L.subspace_similarity(a, b)
    assert sim.shape == (6, 9)
    for i, j in ((1, 1), (2, 7), (6, 9), (5, 3)):
        assert float(sim[i - 1, j - 1]) == pytest.approx(numpy_phi(a.numpy(), b.numpy(), i, j))
    assert float(sim.min()) >= 0 and float(sim.max()) <= 1 + 1e-12
    with pytest.raises(LoralabError, match="d_in"):
        L.subspace_similarity(a, torch.ones(2, 5))


def test_random_subspaces_are_near_the_baseline():
    d = 128
    gen = torch.Generator().manual_seed(1)
    sims = torch.stack([L.subspace_similarity(torch.randn(8, d, generator=gen),
                                              torch.randn(16, d, generator=gen))
                        for _ in range(60)]).mean(0)
    for i, j in ((8, 16), (4, 12), (8, 8), (2, 16)):
        assert float(sims[i - 1, j - 1]) == pytest.approx(L.random_similarity(i, j, d), rel=0.12)


def test_block_average_against_loops():
    from loralab.plots.lowrank import block_average

    a = np.arange(7 * 11, dtype=np.float32).reshape(7, 11) ** 1.5
    avg, b = block_average(torch.from_numpy(a), max_cells=4)          # b = ceil(11/4) = 3
    assert b == 3 and avg.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            assert avg[i, j] == pytest.approx(a[3 * i:3 * i + 3, 3 * j:3 * j + 3].mean())
    same, one = block_average(a, max_cells=11)
    assert one == 1 and np.array_equal(same, a)


def test_truncate_is_eckart_young_and_energy_ranks_count_against_numpy() -> None:
    """The pieces the fine-tuning analysis uses on ΔW_full: truncation and the 90 % rank."""
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(12, 9, generator=gen, dtype=torch.float64)
    s = np.linalg.svd(m.numpy(), compute_uv=False)
    factors = L.svd_factors(m)
    for r in (1, 3, 9):
        err = torch.linalg.norm(m - L.truncate(factors, r)).item() ** 2
        assert err == pytest.approx(float(np.sum(s[r:] ** 2)), abs=1e-9)
        assert np.linalg.matrix_rank(L.truncate(factors, r).numpy()) == r
    energy = np.cumsum(s**2) / np.sum(s**2)
    assert L.energy_ranks(torch.from_numpy(s), (0.9,))["90%"] == int(np.argmax(energy >= 0.9)) + 1
    assert L.energy_ranks(torch.tensor([3.0, 0.0, 0.0]), (0.9,))["90%"] == 1
    assert L.energy_ranks(torch.zeros(3)) == {"50%": 0, "90%": 0, "99%": 0}



def test_compare_spectra_draws_gaussian_then_update_and_adds_the_users():
    gen = torch.Generator().manual_seed(7)
    g = L.gaussian_matrix(20, 16, seed=gen)
    u = L.low_rank_plus_noise(20, 16, rank=4, noise=0.2, seed=gen)
    user = L.matrix_with_spectrum([3.0, 1.0], 20, 16, seed=0)
    cmp = L.compare_spectra((20, 16), [8, 2], seed=7, signal_rank=4, noise=0.2, user=user,
                            user_label="mine")
    assert cmp.ranks == (2, 8)
    assert [sp.label for sp in cmp.spectra] == ["Gaussian W0 ~ N(0,1)",
                                                "low rank 4 + noise 0.2", "mine"]
    for sp, w in zip(cmp.spectra, (g, u, user), strict=True):
        assert sp.singular_values == torch.linalg.svdvals(w).double().tolist()
    assert cmp.spectra[0].gaussian and not cmp.spectra[1].gaussian
    data = cmp.to_dict()
    assert data["ranks"] == [2, 8]
    assert data["spectra"][2]["energy_at_ranks"] == pytest.approx([1.0, 1.0])   # rank 2
    with pytest.raises(LoralabError, match="rank 17"):
        L.compare_spectra((20, 16), [17])
