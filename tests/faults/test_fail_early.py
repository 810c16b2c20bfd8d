"""Class 6: everything that can be checked is checked before any work, nothing is created in
``--out`` before that, and the message names the flag or variable to change."""

from __future__ import annotations

import pytest
from conftest import TINY_ARGS, one_error_line

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _blocked(tmp_path):
    (tmp_path / "blocker").write_text("a file where a folder should be")
    return tmp_path / "blocker" / "cache"


@pytest.mark.parametrize("case", ["--cache", "LORALAB_CACHE", "--device", "--json", "--seed",
                                  "--seed-negative", "--threads", "--json-folder",
                                  "--json-fifo"])
def test_finetune_refuses_before_any_work_and_creates_no_out(run_cli, tmp_path, capsys,
                                                             monkeypatch, no_work, case):
    import os

    import torch

    out = tmp_path / "o"
    extra: list[str] = ["--cache", str(tmp_path / "c")]
    names = case
    if case == "--cache":
        extra = ["--cache", str(_blocked(tmp_path))]
    elif case == "LORALAB_CACHE":
        extra = []
        monkeypatch.setenv("LORALAB_CACHE", str(_blocked(tmp_path)))
    elif case == "--device":
        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
        extra += ["--device", "cuda"]
    elif case == "--json":
        extra += ["--json", str(tmp_path / "missing" / "r.json")]
    elif case == "--json-folder":
        (tmp_path / "r.json").mkdir()
        extra += ["--json", str(tmp_path / "r.json")]
        names = "--json"
    elif case == "--json-fifo":
        os.mkfifo(tmp_path / "r.json")
        extra += ["--json", str(tmp_path / "r.json")]
        names = "--json"
    elif case == "--seed":
        extra += ["--seed", str(2**70)]
    elif case == "--seed-negative":
        extra += ["--seed", "-1"]
        names = "--seed"
    else:
        extra += ["--threads", "100000"]
    assert run_cli(["finetune", *TINY_ARGS, "--out", str(out), *extra]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert names in line, line
    assert not out.exists()


@pytest.mark.parametrize("argv, flag", [
    (["svd", "--json", "missing/r.json"], "--json"),
    (["spectrum", "--out", "missing/s.png"], "--out"),
    (["fit", "--seed", "-5"], "--seed"),
    (["demo", "--seed", str(2**64), "--no-pseudo"], "--seed"),
    (["heatmap", "--out", "h.jpg"], "--out"),
])
def test_lowrank_commands_refuse_before_any_work(run_cli, tmp_path, monkeypatch, capsys,
                                                 no_work, argv, flag):
    monkeypatch.chdir(tmp_path)
    assert run_cli(argv) == 2
    assert flag in one_error_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []
