"""The CLI: the demo's flags and JSON, one-line errors with exit code 2, nothing half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loralab.cli import main

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["demo", "--hidden-size", "48", "--ranks", "2,4", "--no-pseudo"]



def test_demo_json_has_the_documented_fields(run_cli, tmp_path, capsys):
    out, js = tmp_path / "f.png", tmp_path / "r.json"
    assert run_cli([*SMALL, "--alpha", "8", "--seed", "1", "--out", str(out),
                    "--json", str(js), "--dtype", "float64"]) == 0
    data = json.loads(js.read_text())
    assert data["config"] == {"hidden_size": 48, "rank_candidates": [2, 4], "alpha": 8.0}
    assert [row["rank"] for row in data["rows"]] == [2, 4]
    for row in data["rows"]:
        assert {"rank", "delta_norm", "theory", "optimal_error", "trainable_params",
                "full_params"} <= set(row)
        assert row["trainable_params"] == 2 * 48 * row["rank"]
    assert out.is_file()
    assert "‖ΔW‖_F" in capsys.readouterr().out


def test_no_plot_writes_no_png(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_cli([*SMALL, "--no-plot"]) == 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("extra, needle", [
    (["--hidden-size", "0"], "0 is not allowed"),
    (["--hidden-size", "x"], "'x'"),
    (["--ranks", ","], "no rank"),
    (["--ranks", "2,0"], "rank 0"),
    (["--ranks", "2,a"], "'a'"),
    (["--ranks", "64"], "rank 64"),
    (["--alpha", "nan"], "'nan'"),
    (["--alpha", "inf"], "'inf'"),
    (["--dtype", "float16"], "float16"),
    (["--out", "missing-dir/f.png"], "missing-dir"),
    (["--out", "afile/f.png"], "afile"),
    (["--json", "missing-dir/r.json"], "missing-dir"),
])
def test_bad_input_is_one_line_exit_2_and_no_file(run_cli,
                                                  tmp_path, monkeypatch, capsys, extra, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a folder")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert run_cli([*SMALL, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert needle in err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_failed_plot_leaves_no_partial_file(run_cli, tmp_path, monkeypatch, capsys):
    import loralab.plots as plots

    def broken(fig, dpi=100):
        raise OSError("disk full")

    monkeypatch.setattr(plots, "png_bytes", broken)
    assert run_cli([*SMALL, "--out", str(tmp_path / "f.png")]) == 2
    assert "disk full" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_help_does_not_import_torch():
    code = ("import sys; from loralab.cli import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'numpy', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    help_run = subprocess.run([sys.executable, "-m", "loralab", "--help"], capture_output=True,
                              text=True, check=True)
    assert "demo" in help_run.stdout and "pseudo" in help_run.stdout


def test_seed_script_headless_deterministic_and_same_as_cli(tmp_path, capsys, monkeypatch):
    """`python lora_rank_demo.py` with no arguments: table, PNG, pseudo code; no warnings."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND")}
    proc = subprocess.run([sys.executable, str(ROOT / "lora_rank_demo.py")], cwd=tmp_path,
                          capture_output=True, text=True, env=env, check=True)
    assert proc.stderr == ""
    png = tmp_path / "lora_rank_error.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = proc.stdout
    table, pseudo = text.index("rank "), text.index("class LoRALinear")
    assert table < text.index("saved lora_rank_error.png") < pseudo
    for needle in ("lora_a", "lora_b", "requires_grad_(False)", "dropout", "merge",
                   "q_proj"):
        assert needle in text[pseudo - 200:]
    monkeypatch.chdir(tmp_path)
    png.unlink()
    assert main(["demo"]) == 0
    assert capsys.readouterr().out == text                       # same seed, same output
