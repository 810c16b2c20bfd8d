"""loralab.lowrank.tables: the commands print exactly what a notebook gets from the library,
and each table shows the result's numbers, one row per rank."""

from __future__ import annotations

import math

import pytest
import torch

from loralab import lowrank as L

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GAUSSIAN = "Gaussian W0 ~ N(0,1)"       # the label of a generated Gaussian matrix


def printed_table(run_cli, capsys, tmp_path, argv: list[str]) -> str:
    """What the command printed before the ``saved ...`` lines."""
    capsys.readouterr()
    assert run_cli([*argv, "--out", str(tmp_path / "f.png")]) == 0
    out = capsys.readouterr().out
    table, saved = out.split("\n\nsaved ", 1)
    assert saved.startswith(str(tmp_path))
    return table + "\n"


def test_svd_prints_format_svd(run_cli, capsys, tmp_path):
    printed = printed_table(run_cli, capsys, tmp_path, [
        "svd", "--hidden-size", "40", "--in-features", "30", "--ranks", "5,2", "--seed", "3"])
    gen = torch.Generator().manual_seed(3)
    w = L.gaussian_matrix(40, 30, seed=gen)
    analysis = L.analyze_svd(w, (2, 5), alpha=16.0, seed=gen, label=GAUSSIAN, gaussian=True)
    text = L.format_svd(analysis)
    assert printed == text + "\n"
    lines = text.splitlines()
    for r, err in zip(analysis.sweep.ranks, analysis.sweep.optimal_error, strict=True):
        row = next(line for line in lines if line.split()[:1] == [str(r)])
        assert f"{err:,.4f}" in row
    assert "quarter-circle theory" in text and "Eckart–Young check" in text


def test_heatmap_prints_format_heatmap(run_cli, capsys, tmp_path):
    printed = printed_table(run_cli, capsys, tmp_path, [
        "heatmap", "--hidden-size", "30", "--in-features", "20", "--delta-kind", "seed",
        "--ranks", "2,4", "--seed", "1"])
    gen = torch.Generator().manual_seed(1)
    w0 = L.gaussian_matrix(30, 20, seed=gen)
    delta, label = L.generated_delta("seed", w0, rank=5, generator=gen, alpha=16.0)
    h = L.analyze_heatmap(w0, delta, (2, 4), w0_label=GAUSSIAN, delta_label=label)
    text = L.format_heatmap(h)
    assert printed == text + "\n"
    rows = text.splitlines()[-2:]
    for row, r, err in zip(rows, h.sweep.ranks, h.sweep.optimal_error, strict=True):
        assert row.split()[0] == str(r) and f"{err:,.5g}" in row


def test_heatmap_of_a_zero_base_says_na():
    h = L.analyze_heatmap(torch.zeros(6, 6), torch.eye(6), [2])
    assert "ratio n/a" in L.format_heatmap(h)
    assert L.format_heatmap(h).splitlines()[-1].split()[-1] == "n/a"


def test_spectrum_prints_format_spectrum(run_cli, capsys, tmp_path):
    printed = printed_table(run_cli, capsys, tmp_path, [
        "spectrum", "--hidden-size", "24", "--ranks", "6,2", "--seed", "2"])
    comparison = L.compare_spectra((24, 24), (2, 6), seed=2, signal_rank=6, noise=0.1)
    text = L.format_spectrum(comparison)
    assert printed == text + "\n"
    row = next(line for line in text.splitlines() if line.startswith("low rank 6"))
    assert row.split()[-2:] == [f"{e:.1%}" for e in
                                comparison.energy_at_ranks(comparison.spectra[1])]
    assert "Marchenko–Pastur edges" in text


def test_fit_table_rows_and_full_rank():
    target = L.low_rank_plus_noise(12, 10, rank=3, noise=0.0, seed=0, dtype="float64")
    result = L.fit_lowrank(target, [1, 10], steps=30, lr=0.05, seed=0)
    text = L.format_fit(result, "my target")
    assert text.startswith("loralab fit: target my target, shape (12, 10)")
    row1 = next(line for line in text.splitlines() if line.split()[:2] == ["1", "30"])
    fit1 = result.fits[0]
    assert f"{fit1.learned_error:,.6g}" in row1 and f"{fit1.ratio:.5f}" in row1
    assert math.isinf(result.fits[1].ratio) or result.fits[1].optimal_error == 0
    assert "n/a (floor 0)" in text and "subspace similarity" in text


def test_quant_table_rows():
    from loralab.lowrank.quant_error import analyze_quant

    w = L.gaussian_matrix(16, 24, seed=0)
    a = analyze_quant(w, [2, 4], bits=8, iters=2, label="W")
    lines = L.format_quant(a).splitlines()
    assert lines[0] == f"loralab quant: 8-bit W 16×24, ‖W‖_F = {a.frobenius_norm:,.4g}"
    for r in (2, 4):
        row = next(line for line in lines if line.split()[:1] == [str(r)])
        assert row.split()[1:] == [f"{a.residual(r, t) / a.frobenius_norm:.4f}"
                                   for t in (1, 2)]
