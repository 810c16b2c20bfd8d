"""`loralab advise`: bad input is one line, exit 2, nothing created; a run writes an
adapter_config.json that loralab and PEFT read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("argv, message", [
    (["--energy", "0"], "--energy must be > 0"),
    (["--energy", "1.5"], "--energy must be > 0"),
    (["--energy", "nan"], "finite"),
    (["--budget", "0"], "--budget must be 1.."),
    (["--budget", "10", "--energy", "0.5"], "not allowed with argument"),
    (["--probe", "svd"], "invalid choice: 'svd'"),
    (["--probe-steps", "0"], "--probe-steps must be 1..10000"),
    (["--targets", "+"], "targets is empty"),
])
def test_bad_input_is_one_line_exit_2_nothing_created(run_cli, argv: list[str], message: str,
                                                      tmp_path: Path, capsys) -> None:
    code = run_cli(["advise", "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_budget_outside_the_models_range_and_a_run(run_cli, tmp_path: Path, capsys) -> None:
    common = ["advise", "--preset", "quick", "--targets", "attn", "--cache",
              str(tmp_path / "cache"), "--device", "cpu", "--probe-steps", "2"]
    code = run_cli([*common, "--budget", "100", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "budget=100 is not allowed for these 8 modules; give 1024" in err
    assert not (tmp_path / "o").exists()
    code = run_cli([*common, "--budget", "4096", "--no-check", "--out", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert code == 0 and "uniform rank of the same count: r=4" in out
    cfg = json.loads((tmp_path / "o" / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and len(cfg["rank_pattern"]) == 8
    assert sum(128 * r for r in cfg["rank_pattern"].values()) <= 4096
    from loralab.lora import config_from_peft

    assert config_from_peft(cfg).rank_pattern == cfg["rank_pattern"]
    assert json.loads((tmp_path / "o" / "advice.json").read_text())["check"] is None
