"""One run of `loralab finetune`: the gradient audit after its first step stops a run that
would train nothing (one line, exit 2) and lets a healthy one through."""

from __future__ import annotations

from pathlib import Path

import pytest

from loralab.experiment import one_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _argv(out: Path, cache: Path) -> list[str]:
    return ["finetune", "--preset", "quick", "--methods", "lora", "--ranks", "2", "--targets",
            "attn", "--steps", "3", "--out", str(out), "--cache", str(cache), "--device", "cpu",
            "--no-progress"]


def test_finetune_stops_when_a_factor_was_frozen(run_cli, tmp_path: Path, monkeypatch,
                                                 capsys) -> None:
    build = one_run.build_run_model

    def frozen_later(base, run, config):             # a "freeze" call after the injection
        model = build(base, run, config)
        for name, p in model.named_parameters():
            if name.endswith("blocks.1.attn.v_proj.lora_B.default.weight"):
                p.requires_grad_(False)
        return model

    monkeypatch.setattr(one_run, "build_run_model", frozen_later)
    code = run_cli(_argv(tmp_path / "o", tmp_path / "cache"))
    err = capsys.readouterr().err
    assert code == 2, err
    line = err.strip().splitlines()
    assert len(line) == 1 and "Traceback" not in err
    assert "run lora-r2-attn: gradient audit after the first step" in line[0]
    assert "blocks.1.attn.v_proj.lora_B.default.weight" in line[0] and "frozen" in line[0]
