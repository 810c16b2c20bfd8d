"""`loralab quant` and its analysis, against bitsandbytes' NF4 and an SVD done here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

bnb = pytest.importorskip("bitsandbytes")

from loralab.errors import LoralabError  # noqa: E402
from loralab.lowrank.quant_error import analyze_quant  # noqa: E402

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore::UserWarning")]


def test_quant_error_and_first_round_are_nf4_and_eckart_young() -> None:
    torch.manual_seed(0)
    w = torch.randn(64, 128)
    a = analyze_quant(w, [4, 16], bits=4, iters=3)
    q4, state = bnb.functional.quantize_4bit(w.contiguous(), blocksize=64, quant_type="nf4")
    err = w - bnb.functional.dequantize_4bit(q4, state)
    assert a.quant_error == pytest.approx(float(err.norm()), rel=1e-6)
    s = np.linalg.svd(err.double().numpy(), compute_uv=False)
    for r in (4, 16):       # round 1 = the best rank-r fit of W − Q(W) (Eckart–Young)
        assert a.residual(r, 1) == pytest.approx(float(np.sqrt(np.sum(s[r:] ** 2))), rel=1e-4)
        assert a.residual(r, 3) <= a.residual(r, 1) + 1e-6
    np.testing.assert_allclose(a.error_singular_values, s, rtol=1e-4)
    assert a.residual(16, 3) < a.residual(4, 3) < a.quant_error


def test_8bit_error_is_per_row_absmax() -> None:
    torch.manual_seed(1)
    w = torch.randn(32, 64)
    absmax = w.abs().amax(dim=1, keepdim=True)
    q = torch.round(w / absmax * 127) * absmax / 127
    a = analyze_quant(w, [4], bits=8, iters=1)
    assert a.quant_error == pytest.approx(float((w - q).norm()), rel=1e-6)


def test_cli_json_has_the_documented_fields(run_cli, tmp_path: Path, capsys) -> None:
    out, js = tmp_path / "q.png", tmp_path / "q.json"
    assert run_cli(["quant", "--hidden-size", "64", "--in-features", "128", "--ranks", "4,8",
                    "--iters", "2", "--out", str(out), "--json", str(js)]) == 0
    data = json.loads(js.read_text())
    assert isinstance(data["quant_error"], float)
    assert {(r["rank"], r["iters"]) for r in data["rows"]} == {(4, 1), (4, 2), (8, 1), (8, 2)}
    assert all(r["residual"] < data["quant_error"] for r in data["rows"])
    assert out.is_file() and "QLoRA start" in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "needle"), [
    (["--bits", "3"], "--bits"), (["--iters", "0"], "--iters"),
    (["--ranks", "200"], "rank 200 is not allowed")])
def test_cli_bad_input_is_one_line_exit_2(run_cli, tmp_path: Path, capsys, argv, needle) -> None:
    out = tmp_path / "q.png"
    assert run_cli(["quant", "--hidden-size", "64", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and not out.exists()


def test_analysis_refuses_bad_iters() -> None:
    with pytest.raises(LoralabError, match="iters=0"):
        analyze_quant(torch.randn(8, 64), [2], iters=0)
