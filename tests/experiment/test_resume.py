"""The resume folder's layout lives in one place: ``loralab.experiment.resume``."""

from __future__ import annotations

import json
from pathlib import Path

from loralab.experiment.resume import ResumeFolder, resume_hint
from loralab.lm.dist import DistContext
from loralab.results import ExperimentConfig, plan_runs


def test_layout_stamp_and_drop(tmp_path: Path) -> None:
    config = ExperimentConfig(preset="quick", ranks=(2,), targets=("attn",))
    folder = ResumeFolder.of(tmp_path, config)
    assert folder.path == tmp_path / ".resume" / config.key()
    run = plan_runs(config)[1]
    assert folder.done(run) == folder.path / "lora-r2-attn.done.safetensors"
    assert folder.checkpoint(run) == folder.path / "lora-r2-attn.ckpt"
    assert not folder.holds_finished_runs() and not folder.path.exists()   # nothing created
    folder.open("a" * 64, DistContext())
    stamp = json.loads((folder.path / "base.json").read_text())
    assert stamp == {"base_sha256": "a" * 64}
    folder.done(run).write_bytes(b"")
    assert folder.holds_finished_runs()
    assert "kept in" in resume_hint(KeyboardInterrupt(), tmp_path, config)
    folder.open("a" * 64, DistContext())                      # same base: kept
    assert folder.done(run).exists()
    folder.open("b" * 64, DistContext())                      # a rebuilt base: discarded
    assert not folder.done(run).exists() and (folder.path / "base.json").is_file()
    folder.drop()
    assert not (tmp_path / ".resume").exists()
