"""loralab.plots.lowrank: the figures of ``loralab svd``, ``spectrum`` and ``fit``."""

from __future__ import annotations

import numpy as np
import pytest

from loralab.lowrank import analyze_svd, fit_lowrank, gaussian_matrix, low_rank_plus_noise, spectrum
from loralab.plots import png_bytes
from loralab.plots.lowrank import (
    fit_curves_figure,
    fit_figure,
    similarity_figure,
    spectrum_figure,
    svd_figure,
)

from .conftest import is_png, legend_texts, line_labels

M, N = 24, 16


@pytest.fixture(scope="module")
def svd():
    return analyze_svd(gaussian_matrix(M, N, seed=0), [1, 2, 4, 8], gaussian=True,
                       randomized=True, label="gaussian W0")


@pytest.fixture(scope="module")
def fit():
    return fit_lowrank(low_rank_plus_noise(M, N, rank=3, seed=0), [2, 4], steps=20)


def test_svd_left_puts_the_seeds_norm_beside_the_optimum(svd):
    fig = svd_figure(svd)
    assert len(fig.axes) == 2
    left, right = fig.axes
    lines = {ln.get_label(): ln for ln in left.get_lines()}
    seed = next(ln for lab, ln in lines.items() if lab.startswith("seed's random"))
    best = next(ln for lab, ln in lines.items() if lab.startswith("best rank-"))
    assert list(seed.get_ydata()) == [row.delta_norm for row in svd.random]
    assert list(best.get_ydata()) == svd.sweep.optimal_error
    assert [t.get_text() for t in left.get_xticklabels()] == ["1", "2", "4", "8"]
    assert "quarter-circle theory" in line_labels(left)           # a Gaussian matrix
    assert "randomized (torch.svd_lowrank)" in legend_texts(right)
    assert f"shape ({M}, {N})" in fig._suptitle.get_text()
    assert is_png(png_bytes(fig))


def test_svd_right_is_the_whole_relative_curve(svd):
    _, right = svd_figure(svd).axes
    curve = right.get_lines()[0]
    assert list(curve.get_xdata()) == list(range(1, N + 1))           # every rank 1..min(m, n)
    np.testing.assert_allclose(curve.get_ydata(), svd.sweep.relative_curve()[1:])
    assert curve.get_ydata()[-1] == pytest.approx(0.0, abs=1e-6)      # rank k: nothing left
    assert right.get_xlim() == (1, N)


def test_svd_of_a_matrix_that_is_not_gaussian_has_a_reference_instead():
    a = analyze_svd(low_rank_plus_noise(M, N, rank=3, seed=0), [2, 4])
    left, right = svd_figure(a).axes
    assert "a Gaussian matrix of this shape and norm" in line_labels(left)
    assert "randomized (torch.svd_lowrank)" not in legend_texts(right)


def test_spectrum_draws_each_matrix_and_the_law_for_gaussian_ones():
    spectra = [spectrum(gaussian_matrix(M, N, seed=0), label="W0", gaussian=True),
               spectrum(low_rank_plus_noise(M, N, rank=3, seed=1), label="ΔW")]
    fig = spectrum_figure(spectra)
    assert len(fig.axes) == 3
    sv, energy, hist = fig.axes
    assert line_labels(sv) == ["W0", "Marchenko–Pastur quantiles", "ΔW"]
    curves = [ln for ln in energy.get_lines() if ln.get_label() in
              {lab for lab in line_labels(energy) if "of the energy" in lab}]
    assert len(curves) == 2
    for ln, sp in zip(curves, spectra, strict=True):
        assert list(ln.get_ydata()) == sp.cumulative_energy
    assert hist.axison and len(hist.patches) > 0                  # one Gaussian: a histogram


def test_spectrum_without_a_gaussian_matrix_hides_the_histogram():
    fig = spectrum_figure([spectrum(low_rank_plus_noise(M, N, rank=3, seed=1), label="ΔW")])
    assert not fig.axes[2].axison


def test_fit_curves_fall_to_each_ranks_floor(fit):
    fig = fit_curves_figure(fit)
    assert len(fig.axes) == 2
    curves, ratios = fig.axes
    assert len(line_labels(curves)) == len(fit.fits)
    for f, lab in zip(fit.fits, line_labels(curves), strict=True):
        assert lab.startswith(f"r = {f.rank}: learned / optimal = ")
    line = ratios.get_lines()[0]
    assert list(line.get_xdata()) == [2, 4]
    assert list(line.get_ydata()) == pytest.approx([f.ratio for f in fit.fits])
    assert f"After {fit.fits[0].steps} steps" in ratios.get_title()


def test_similarity_maps_phi_and_its_random_baseline(fit):
    sim = fit.similarity
    fig = similarity_figure(sim)
    heat, diag = fig.axes[:2]
    assert heat.images[0].get_array().shape == (sim.rank_1, sim.rank_2)
    baseline = diag.get_lines()[-1]
    np.testing.assert_allclose(baseline.get_ydata(), np.arange(1, sim.rank_1 + 1) / sim.d_in)
    assert len(fig.axes) == 3                                     # and the colour bar


def test_fit_figure_stacks_curves_over_similarity(fit):
    from dataclasses import replace

    assert len(fit_figure(fit).axes) == 2 * 2 + 1                 # two rows, a colour bar
    alone = fit_figure(replace(fit, similarity=None))
    assert len(alone.axes) == 2
    assert f"target ({M}, {N})" in alone._suptitle.get_text()
