"""What the experiment computes and how it runs: two records, one ``config`` in the JSON."""

from __future__ import annotations

from dataclasses import fields

import pytest

from loralab.errors import LoralabError
from loralab.experiment import check_plan
from loralab.results import ExperimentConfig, RunOptions
from loralab.results.finetune import CONFIG_KEYS, config_dict, config_from_dict

# results.json's "config", key for key and in this order (the schema the files have had).
JSON_CONFIG = ["preset", "methods", "ranks", "targets", "seed", "device", "bf16", "lora_alpha",
               "rslora_ranks", "data", "model", "revision", "steps", "batch", "fsdp",
               "grad_checkpointing", "jobs", "threads"]


def test_what_and_how_are_split_and_the_json_keeps_its_config() -> None:
    what = {f.name for f in fields(ExperimentConfig)}
    how = {f.name for f in fields(RunOptions)}
    assert not what & how
    assert what | how == set(JSON_CONFIG) | {"cache_dir"}   # the cache is never saved
    assert list(CONFIG_KEYS) == JSON_CONFIG
    config = ExperimentConfig(preset="quick", ranks=(4, 2), targets=("attn",), seed=3,
                              methods=("lora", "dora"), bf16=True)
    options = RunOptions(device="cpu", cache_dir="/somewhere", jobs=2, threads=1)
    d = config_dict(config, options)
    assert list(d) == JSON_CONFIG and d["ranks"] == (2, 4) and d["jobs"] == 2
    back, back_options = config_from_dict(d)
    assert back == config and back_options == RunOptions(device="cpu", jobs=2, threads=1)


def test_options_change_no_key() -> None:
    """The resume and cache keys are the config's: how a run goes never renames its state."""
    config = ExperimentConfig(preset="quick")
    assert config.key() == ExperimentConfig(preset="quick").key()
    assert config.key() != config.with_changes(bf16=True).key()      # bf16: another base
    assert config.base_key() != config.with_changes(bf16=True).base_key()


@pytest.mark.parametrize("kwargs, message", [
    ({"device": "tpu"}, "device 'tpu' is not allowed"),
    ({"jobs": -1}, "jobs=-1 is not allowed"),
    ({"threads": 2.5}, "threads=2.5 is not allowed"),
])
def test_options_refuse_bad_input(kwargs: dict, message: str) -> None:
    with pytest.raises(LoralabError, match=message):
        RunOptions(**kwargs)


def test_bitsandbytes_is_probed_by_the_plan_check_not_the_config(monkeypatch) -> None:
    import loralab.quantizer

    def missing():
        raise LoralabError("this needs bitsandbytes, which is not installed")

    monkeypatch.setattr(loralab.quantizer, "bnb", missing)
    config = ExperimentConfig(preset="quick", methods=("lora", "qlora", "loftq"))  # no probe
    with pytest.raises(LoralabError, match="^methods loftq, qlora need bitsandbytes, which is "
                                           "not installed; pip install"):
        check_plan(config, RunOptions())
    check_plan(ExperimentConfig(preset="quick"), RunOptions())       # nothing to probe


def test_fsdp_refuses_methods_it_does_not_shard() -> None:
    check_plan(ExperimentConfig(preset="quick"), RunOptions(fsdp=True))
    with pytest.raises(LoralabError, match="methods dora are not allowed with --fsdp"):
        check_plan(ExperimentConfig(preset="quick", methods=("full", "dora")),
                   RunOptions(fsdp=True))
