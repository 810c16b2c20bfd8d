"""Class 8: nothing blocks, nothing misleads.

An ``--input`` that is not a regular file (a FIFO would block the read forever, a device never
ends) is refused before it is opened; an output that exists as a FIFO or device is never
replaced; a figure's suffix is honoured (PNG, PDF, SVG through Matplotlib) and any other
suffix is refused before any work, so a file never holds another format than its name says.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from conftest import one_error_line

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_a_fifo_as_input_is_refused_at_once_not_read(tmp_path):
    """In a subprocess with a timeout: before the fix this read blocked forever."""
    os.mkfifo(tmp_path / "pipe.npy")
    proc = subprocess.run([sys.executable, "-m", "loralab", "svd", "--input", "pipe.npy",
                           "--out", "o.png"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "FIFO" in one_error_line(proc.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.npy"]


@pytest.mark.parametrize("flag", ["--input", "--delta-input"])
def test_devices_and_fifos_as_matrices_are_refused(run_cli, tmp_path, monkeypatch, capsys,
                                                   no_work, flag):
    monkeypatch.chdir(tmp_path)
    os.symlink("/dev/zero", tmp_path / "zero.npy")
    os.mkfifo(tmp_path / "pipe.safetensors")
    for name, kind in (("zero.npy", "character device"), ("pipe.safetensors:w", "FIFO")):
        argv = ["heatmap", flag, name, "--out", "o.png"]
        if flag == "--delta-input":
            argv += ["--hidden-size", "8"]
        assert run_cli(argv) == 2
        assert kind in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "o.png").exists()


def test_an_output_that_is_a_fifo_is_not_replaced(run_cli, tmp_path, capsys, no_work):
    os.mkfifo(tmp_path / "o.png")
    assert run_cli(["svd", "--hidden-size", "8", "--ranks", "2",
                    "--out", str(tmp_path / "o.png")]) == 2
    assert "FIFO" in one_error_line(capsys.readouterr().err)
    assert stat.S_ISFIFO(os.lstat(tmp_path / "o.png").st_mode)


@pytest.mark.parametrize("cmd, name, magic", [
    ("svd", "f.png", b"\x89PNG"), ("svd", "f.pdf", b"%PDF"), ("svd", "f.svg", b"<?xml"),
    ("demo", "F.PDF", b"%PDF"),
])
def test_the_figure_suffix_is_honoured(run_cli, tmp_path, capsys, cmd, name, magic):
    extra = ["--no-pseudo"] if cmd == "demo" else []
    assert run_cli([cmd, "--hidden-size", "12", "--ranks", "2", *extra,
                    "--out", str(tmp_path / name)]) == 0
    capsys.readouterr()
    assert (tmp_path / name).read_bytes().startswith(magic)


@pytest.mark.parametrize("name", ["f.jpg", "f.txt", "figure", "f.png.bak", "f.json"])
@pytest.mark.parametrize("cmd", ["demo", "spectrum", "fit"])
def test_any_other_suffix_is_refused_before_any_work(run_cli, tmp_path, capsys, no_work, cmd,
                                                     name):
    extra = ["--no-pseudo"] if cmd == "demo" else []
    assert run_cli([cmd, *extra, "--out", str(tmp_path / name)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert ".png, .pdf, .svg" in line and "--out" in line
    assert list(tmp_path.iterdir()) == []


def test_the_library_refuses_a_misleading_suffix_too(tmp_path):
    from loralab.demo import LoraConfig, simulate_lora
    from loralab.errors import LoralabError
    from loralab.plots import new_figure, save_png

    with pytest.raises(LoralabError, match="suffix"):
        save_png(new_figure(), tmp_path / "x.jpg")
    with pytest.raises(LoralabError, match="suffix"):
        simulate_lora(LoraConfig(8, (2,)), plot_path=tmp_path / "x.gif", verbose=False)
    assert list(tmp_path.iterdir()) == []
    np.testing.assert_equal(save_png(new_figure(), tmp_path / "x.svg").endswith("x.svg"), True)
