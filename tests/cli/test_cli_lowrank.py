"""The low-rank subcommands through loralab.cli.main: outputs, JSON against numpy, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def numpy_tail(w: np.ndarray, ranks: list[int]) -> list[float]:
    s = np.linalg.svd(w.astype(np.float64), compute_uv=False)
    return [float(np.sqrt(np.sum(s[r:] ** 2))) for r in ranks]


def test_svd_generated_nonsquare(run_cli, tmp_path, capsys):
    out, js = tmp_path / "svd.png", tmp_path / "svd.json"
    argv = ["svd", "--hidden-size", "40", "--in-features", "24", "--ranks", "8,2,24",
            "--seed", "3", "--out", str(out), "--json", str(js), "--randomized"]
    assert run_cli(argv) == 0
    printed = capsys.readouterr().out
    assert "Eckart–Young check" in printed and "largest discrepancy" in printed
    assert "randomized path" in printed
    data = json.loads(js.read_text())
    assert data["ranks"] == [2, 8, 24] and data["shape"] == [40, 24]
    w = torch.randn(40, 24, generator=torch.Generator().manual_seed(3)).numpy()
    np.testing.assert_allclose(data["optimal_error"], numpy_tail(w, [2, 8, 24]),
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(data["singular_values"],
                               np.linalg.svd(w.astype(np.float64), compute_uv=False), rtol=1e-5)
    assert len(data["random_error"]) == 3 and data["eckart_young"]["max_frobenius_diff"] < 1e-5
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_svd_input_safetensors_float64(run_cli, tmp_path, capsys):
    w = torch.randn(30, 50, dtype=torch.float64)
    save_file({"q.weight": w, "bias": torch.zeros(3)}, str(tmp_path / "m.safetensors"))
    js = tmp_path / "r.json"
    assert run_cli(["svd", "--input", f"{tmp_path / 'm.safetensors'}:q.weight", "--ranks",
                    "1,5", "--dtype", "float64", "--no-check", "--out",
                    str(tmp_path / "f.png"), "--json", str(js)]) == 0
    data = json.loads(js.read_text())
    np.testing.assert_allclose(data["optimal_error"], numpy_tail(w.numpy(), [1, 5]), rtol=1e-12)
    assert data["eckart_young"] is None and data["matrix"] == "m.safetensors:q.weight"
    assert "Eckart–Young check" not in capsys.readouterr().out


def test_spectrum_with_user_matrix(run_cli, tmp_path, capsys):
    w = np.diag([4.0, 2.0, 1.0, 0.5]) @ np.ones((4, 6)) + 0.01 * np.eye(4, 6)
    np.save(tmp_path / "u.npy", w)
    js = tmp_path / "s.json"
    assert run_cli(["spectrum", "--input", str(tmp_path / "u.npy"), "--ranks", "1,2",
                    "--out", str(tmp_path / "s.png"), "--json", str(js)]) == 0
    data = json.loads(js.read_text())
    assert [sp["label"] for sp in data["spectra"]][-1] == "u.npy"
    assert all(sp["shape"] == [4, 6] for sp in data["spectra"])       # generated take its shape
    s = np.linalg.svd(w, compute_uv=False)
    energy = np.cumsum(s**2) / np.sum(s**2)
    user = data["spectra"][-1]
    np.testing.assert_allclose(user["energy_at_ranks"], energy[:2], rtol=1e-5)
    assert user["energy_ranks"]["90%"] == int(np.searchsorted(energy, 0.9) + 1)
    assert data["spectra"][0]["gaussian"] is True
    assert "Marchenko–Pastur edges" in capsys.readouterr().out


def test_heatmap_with_loaded_delta_and_blocks(run_cli, tmp_path):
    gen = torch.Generator().manual_seed(0)
    w0 = torch.randn(48, 40, generator=gen)
    delta = torch.randn(48, 3, generator=gen) @ torch.randn(3, 40, generator=gen)
    np.save(tmp_path / "w0.npy", w0.numpy())
    np.save(tmp_path / "d.npy", delta.numpy())
    js = tmp_path / "h.json"
    assert run_cli(["heatmap", "--input", str(tmp_path / "w0.npy"), "--delta-input",
                    str(tmp_path / "d.npy"), "--ranks", "1,3", "--max-cells", "16",
                    "--out", str(tmp_path / "h.png"), "--json", str(js)]) == 0
    data = json.loads(js.read_text())
    assert data["block"] == 3 and data["ranks"] == [1, 3]
    ref = numpy_tail(delta.numpy(), [1, 3])
    assert data["residual_error"][0] == pytest.approx(ref[0], rel=1e-5)
    assert data["residual_error"][1] < 1e-4 * data["delta_norm"]       # rank-3 ΔW: exact
    assert (tmp_path / "h.png").is_file()


def test_fit_json_and_convergence(run_cli, tmp_path, capsys):
    js = tmp_path / "fit.json"
    torch.set_num_threads(2)      # the command fits small targets on one thread, then restores
    assert run_cli(["fit", "--hidden-size", "40", "--in-features", "32", "--signal-rank", "6",
                    "--ranks", "2,6", "--steps", "400", "--out", str(tmp_path / "f.png"),
                    "--json", str(js)]) == 0
    data = json.loads(js.read_text())
    assert [f["rank"] for f in data["fits"]] == [2, 6]
    for f in data["fits"]:
        assert {"rank", "learned_error", "optimal_error", "steps"} <= set(f)
        assert f["steps"] == 400
        assert 1 - 1e-6 <= f["learned_error"] / f["optimal_error"] <= 1.01
    assert data["similarity"]["rank_1"] == 2 and data["similarity"]["rank_2"] == 6
    assert "subspace similarity" in capsys.readouterr().out
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize("argv, needle", [
    (["svd", "--ranks", "600"], "rank 600 is not allowed"),
    (["svd", "--hidden-size", "8", "--in-features", "4", "--ranks", "5"], "1..min(m, n) = 4"),
    (["svd", "--ranks", "0"], "rank 0"),
    (["svd", "--input", "missing.npy"], "does not exist"),
    (["svd", "--input", "BAD", "--hidden-size", "8"], "cannot be combined"),
    (["spectrum", "--input", "NAN"], "NaN/Inf"),
    (["heatmap", "--input", "KEYS:nope"], "keys: 'a', 'b'"),
    (["heatmap", "--input", "3D"], "only 2-D"),
    (["fit", "--compare", "2,3", "--hidden-size", "16", "--ranks", "2,4"], "compare"),
    (["fit", "--steps", "0"], "0 is not allowed"),
    (["heatmap", "--delta-input", "SMALL", "--hidden-size", "8"], "must match W0"),
    (["svd", "--out", "missing-dir/f.png"], "missing-dir"),
    (["fit", "--json", "missing-dir/f.json"], "missing-dir"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(run_cli,
                                                         tmp_path, monkeypatch, capsys, argv,
                                                         needle):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "bad.npy", np.ones((3, 3)))
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan]]))
    np.save(tmp_path / "3d.npy", np.ones((2, 2, 2)))
    np.save(tmp_path / "small.npy", np.ones((4, 4)))
    save_file({"a": torch.ones(2, 2), "b": torch.ones(2, 2)}, str(tmp_path / "k.safetensors"))
    names = {"BAD": "bad.npy", "NAN": "nan.npy", "3D": "3d.npy", "SMALL": "small.npy",
             "KEYS:nope": "k.safetensors:nope"}
    before = set(tmp_path.iterdir())
    assert run_cli([names.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and needle in err
    assert set(tmp_path.iterdir()) == before


def test_command_modules_do_not_import_torch():
    code = ("import sys; import loralab.cli as c; c.build_parser(); "
            "bad = [m for m in ('torch', 'numpy', 'matplotlib') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_help_texts_render(run_cli, capsys):
    assert run_cli(["--help"]) == 0
    for cmd in ("svd", "spectrum", "heatmap", "fit"):
        assert run_cli([cmd, "--help"]) == 0
    out = capsys.readouterr().out
    assert "option_strings" not in out and "--input PATH[:KEY]" in out
