"""loralab.lowrank.seed: the seed's (α/r)·B A, drawn in one place, bit for bit the seed's order.

The oracle is an independent re-implementation of the seed script's draw order: one generator,
``W0 ~ N(0, 1)`` first, then per rank ``B: (d_out, r)`` before ``A: (r, d_in)``, float32.
"""

from __future__ import annotations

import pytest
import torch

from loralab import lowrank as L
from loralab.errors import LoralabError
from loralab.lowrank.seed import SeedDelta, draw_seed_delta

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def seed_stream(seed: int, shape: tuple[int, int], ranks: list[int]):
    """The seed's draws, written out: ``W0`` then ``(B, A)`` per rank from one generator."""
    gen = torch.Generator().manual_seed(seed)
    w0 = torch.randn(*shape, generator=gen)
    pairs = []
    for r in ranks:
        b = torch.randn(shape[0], r, generator=gen)
        a = torch.randn(r, shape[1], generator=gen)
        pairs.append((b, a))
    return w0, pairs


def test_draw_order_and_shapes_are_the_seeds():
    shape, ranks, alpha = (30, 20), [1, 3, 7], 8.0
    w0_ref, pairs = seed_stream(5, shape, ranks)
    gen = torch.Generator().manual_seed(5)
    assert torch.equal(L.gaussian_matrix(*shape, seed=gen), w0_ref)
    for r, (b, a) in zip(ranks, pairs, strict=True):
        draw = draw_seed_delta(shape, r, alpha=alpha, generator=gen)
        assert isinstance(draw, SeedDelta) and draw.rank == r and draw.shape == shape
        assert draw.b.shape == (30, r) and draw.a.shape == (r, 20)
        assert torch.equal(draw.b, b) and torch.equal(draw.a, a)
        delta = draw.delta()
        assert delta.dtype == torch.float32 and delta.shape == shape
        assert torch.equal(delta, (alpha / r) * (b @ a))
        assert torch.equal(draw.delta(torch.float64), (alpha / r) * (b.double() @ a.double()))
        assert int(torch.linalg.matrix_rank(draw.delta(torch.float64))) == r   # rank r


def test_an_int_seed_is_a_fresh_generator():
    gen = torch.Generator().manual_seed(11)
    b, a = torch.randn(6, 2, generator=gen), torch.randn(2, 9, generator=gen)
    draw = draw_seed_delta((6, 9), 2, alpha=1.0, generator=11)
    assert torch.equal(draw.b, b) and torch.equal(draw.a, a)


def test_frobenius_norm_without_the_product():
    draw = draw_seed_delta((40, 25), 4, alpha=-3.0, generator=2)
    explicit = float(torch.linalg.norm(draw.delta(torch.float64)))
    assert draw.frobenius_norm() == pytest.approx(explicit, rel=1e-12)
    assert draw.frobenius_norm() > 0                                   # |α/r|: sign-free


@pytest.mark.parametrize("rank", [0, -1, 1.5, True])
def test_bad_ranks_are_refused(rank):
    with pytest.raises(LoralabError, match="rank"):
        draw_seed_delta((4, 4), rank, alpha=1.0, generator=0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_demo_draws_the_seeds_numbers(dtype):
    """The demo's seed "error" ‖W0 − (W0 + ΔW)‖_F, recomputed from the written-out draws."""
    from loralab.demo import LoraConfig, run_demo

    d, ranks, alpha = 48, [2, 4, 8], 16.0
    tdtype = getattr(torch, dtype)
    w0, pairs = seed_stream(42, (d, d), ranks)
    w0 = w0.to(tdtype)
    demo = run_demo(LoraConfig(hidden_size=d, rank_candidates=tuple(ranks), alpha=alpha),
                    seed=42, dtype=dtype)
    for row, r, (b, a) in zip(demo.rows, ranks, pairs, strict=True):
        delta = (alpha / r) * (b.to(tdtype) @ a.to(tdtype))
        assert row.rank == r
        assert row.delta_norm == float(torch.linalg.norm(w0 - (w0 + delta), ord="fro"))


def test_the_svd_baseline_draws_the_seeds_numbers():
    ranks, alpha = [2, 4], 16.0
    _, pairs = seed_stream(42, (48, 36), ranks)
    gen = torch.Generator().manual_seed(42)
    L.gaussian_matrix(48, 36, seed=gen)                                # W0 first, as the seed
    rows = L.random_ba_errors((48, 36), ranks, alpha=alpha, seed=gen)
    for row, r, (b, a) in zip(rows, ranks, pairs, strict=True):
        b, a = b.double(), a.double()
        gram = float(((b.T @ b) * (a @ a.T)).sum())                    # ⟨BᵀB, AAᵀ⟩ = ‖BA‖_F²
        assert row.delta_norm == abs(alpha / r) * gram**0.5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_heatmaps_seed_delta_draws_the_seeds_numbers(dtype):
    k, alpha = 5, 4.0
    w0_ref, [(b, a)] = seed_stream(3, (24, 16), [k])
    gen = torch.Generator().manual_seed(3)
    w0 = L.gaussian_matrix(24, 16, seed=gen, dtype=dtype)
    delta, label = L.generated_delta("seed", w0, rank=k, generator=gen, alpha=alpha)
    assert torch.equal(w0, w0_ref.to(dtype))
    assert delta.dtype == dtype
    assert torch.equal(delta, ((alpha / k) * (b @ a)).to(dtype))      # formed in float32
    assert label == "seed's (α/K)·BA, K = 5"
