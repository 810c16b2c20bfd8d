"""The real-model preset ``smollm2``: its model and texts, its plan (the variants at one rank
and target set), the CLI's per-preset defaults, the target sets of a transformers model, and
the learning-and-forgetting table. No model is trained here (the real-model tests load it)."""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import pytest

from loralab.errors import LoralabError
from loralab.results import ExperimentConfig
from loralab.results.finetune_config import plan_runs
from loralab.results.presets import PRESETS

LLAMA_SETS = [("attn", ("q_proj", "k_proj", "v_proj", "o_proj")),
              ("all", ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                       "down_proj"))]


def test_smollm2_preset_names_its_model_texts_and_defaults():
    real = PRESETS["smollm2"].real
    assert real is not None and PRESETS["default"].real is None
    config = ExperimentConfig(preset="smollm2", methods=real.methods, ranks=real.ranks,
                              targets=real.targets)
    assert config.model == "smollm2" and config.data == "builtin:lunyu"
    assert real.general == "builtin:shakespeare" != config.data     # held out, not the target
    spec = config.spec
    assert spec.lora.lr == pytest.approx(10 * spec.full.lr)         # LoRA ~10x full's rate
    assert spec.model.block_size == 128


def test_smollm2_plan_runs_variants_once():
    real = PRESETS["smollm2"].real
    config = ExperimentConfig(preset="smollm2", methods=real.methods, ranks=real.ranks,
                              targets=real.targets)
    labels = [r.label for r in plan_runs(config, LLAMA_SETS)]
    assert labels == ["full", "lora-r4-attn", "lora-r16-attn", "lora-r4-all", "lora-r16-all",
                      "dora-r16-all", "qlora-r16-all"]
    # a rank or target set the variants' place is not in: the largest rank, last set
    small = ExperimentConfig(preset="smollm2", methods=("lora", "dora"), ranks=(2,),
                             targets=("attn",))
    assert [r.label for r in plan_runs(small, LLAMA_SETS[:1])] == ["lora-r2-attn",
                                                                   "dora-r2-attn"]


def test_tiny_presets_plan_as_before():
    config = ExperimentConfig(preset="quick", methods=("full", "lora", "dora"), ranks=(2, 4),
                              targets=("attn",))
    assert [r.label for r in plan_runs(config)] == ["full", "lora-r2-attn", "lora-r4-attn",
                                                    "dora-r2-attn", "dora-r4-attn"]


def _cli_config(argv: list[str]) -> ExperimentConfig:
    from loralab.cli.finetune import _config, add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return _config(parser.parse_args(argv))[0]


def test_cli_defaults_follow_the_preset():
    real = _cli_config(["--preset", "smollm2"])
    assert real.methods == ("full", "lora", "dora", "qlora")
    assert real.ranks == (4, 16) and real.targets == ("attn", "all")
    assert real.model == "smollm2"
    tiny = _cli_config(["--preset", "quick"])
    assert tiny.methods == ("full", "lora", "rslora") and tiny.ranks == (1, 2, 4, 8, 16)
    assert tiny.targets == ("attn", "attn+mlp") and tiny.model is None
    mine = _cli_config(["--preset", "smollm2", "--ranks", "2", "--targets", "q_proj"])
    assert mine.ranks == (2,) and mine.targets == ("q_proj",)


def test_target_sets_of_a_transformers_llama():
    transformers = pytest.importorskip("transformers")
    from loralab.experiment.workload import resolve_targets

    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, vocab_size=64))
    assert resolve_targets(("attn", "all"), model) == LLAMA_SETS
    assert resolve_targets(("attn+mlp",), model) == [LLAMA_SETS[1]]
    assert resolve_targets(("v_proj+q_proj",), model) == [("v_proj+q_proj",
                                                            ("v_proj", "q_proj"))]
    with pytest.raises(LoralabError, match="'c_attn' is not allowed.*sets attn, mlp, all"):
        resolve_targets(("c_attn",), model)


def test_forgetting_table_reads_the_general_losses():
    from loralab.experiment.tables import _forgetting_lines

    base = SimpleNamespace(finetune_val_loss=3.8, general_val_loss=4.0)
    runs = [SimpleNamespace(label="full", final_val_loss=3.0, general_val_loss=4.5),
            SimpleNamespace(label="lora-r4-attn", final_val_loss=3.4, general_val_loss=4.1)]
    result = SimpleNamespace(base=base, runs=runs, data={"general": "builtin:shakespeare"})
    text = "\n".join(_forgetting_lines(result, "", markdown=True))
    assert "builtin:shakespeare" in text
    assert "| full | 3.000 | -0.800 | 4.500 | +0.500 |" in text
    assert "| lora-r4-attn | 3.400 | -0.400 | 4.100 | +0.100 |" in text
    none = SimpleNamespace(base=SimpleNamespace(general_val_loss=None), runs=runs, data={})
    assert _forgetting_lines(none, "", markdown=True) == []
