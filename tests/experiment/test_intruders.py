"""The intruder study on a transformers model with more blocks than are analysed: which
matrices, the counts per run, a too-large top-k refused before any training (``llama6``:
tests/experiment/conftest.py)."""

from __future__ import annotations

import pytest

from loralab.errors import LoralabError
from loralab.experiment import ExperimentConfig, RunOptions, run_experiment
from loralab.experiment.intruders import analysed_layers
from loralab.results.intruders import IntruderSettings

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(llama6, **kw) -> tuple[ExperimentConfig, RunOptions]:
    model, text = llama6
    return (ExperimentConfig(preset="quick", methods=("full", "lora"), ranks=(1, 4), steps=3,
                             model=str(model), data=str(text), targets=("q_proj+v_proj",)),
            RunOptions(device="cpu", cache_dir=str(model.parent / "cache"), jobs=1))


def test_first_middle_and_last_block_are_counted_for_every_run(llama6, tmp_path):
    result = run_experiment(*_config(llama6), out_dir=tmp_path / "out")
    s = result.analysis.intruders
    blocks = sorted({int(p.split(".")[-3]) for p in s.layers})
    assert blocks == [0, 3, 5] and len(s.layers) == 6               # q and v of 3 blocks
    assert [r.label for r in s.rows] == [r.label for r in result.runs]
    assert all(r.matrices == 6 for r in s.rows)
    assert s.lambda_sweep == [] and result.analysis.forgetting is None   # no source domain
    assert [m.label for m in s.maps] == [r.label for r in result.runs]
    assert (tmp_path / "out" / "intruders.png").is_file()


def test_analysed_layers_of_a_small_model_are_all(llama6):
    model = transformers.AutoModelForCausalLM.from_pretrained(llama6[0])
    model.model.layers = model.model.layers[:4]
    assert len(analysed_layers(model, ("q_proj",))) == 4


def test_top_k_above_a_matrix_rank_is_refused_before_training(llama6, tmp_path):
    with pytest.raises(LoralabError, match="top_k must be <= 32"):
        run_experiment(*_config(llama6), out_dir=tmp_path / "o",
                       intruders=IntruderSettings(top_k=33))
    assert not (tmp_path / "o" / "results.json").exists()
