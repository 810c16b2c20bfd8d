"""The init option parsed once (loralab.lora.init_option): PEFT's values in and out."""

from __future__ import annotations

import pytest

from loralab.errors import LoralabError
from loralab.lora import AdapterConfig
from loralab.lora.config import config_to_peft
from loralab.lora.init_option import InitOption, LoftQConfig, parse_init

CASES = [
    (True, InitOption("default")),
    (False, InitOption("random")),
    ("gaussian", InitOption("gaussian")),
    ("pissa", InitOption("pissa")),
    ("pissa_niter_16", InitOption("pissa", pissa_niter=16)),
    ("olora", InitOption("olora")),
    ("loftq", InitOption("loftq", loftq=LoftQConfig())),
]


@pytest.mark.parametrize(("value", "option"), CASES, ids=[str(v) for v, _ in CASES])
def test_parse_and_peft_value_round_trip(value: object, option: InitOption) -> None:
    assert parse_init(value) == option
    assert parse_init(option) is option
    assert option.peft_value == value and type(option.peft_value) is type(value)
    assert option.splits_base == (value in ("pissa", "pissa_niter_16", "olora", "loftq"))


@pytest.mark.parametrize("value", ["pissa_niter_0", "pissa_niter_", "pissa_niter_016", "eva",
                                   "corda", 1, 0, None, "True"])
def test_bad_values_are_refused_by_name(value: object) -> None:
    with pytest.raises(LoralabError, match=f"init_lora_weights={value!r} is not allowed"):
        parse_init(value)


def test_loftq_options_are_typed_and_written_back() -> None:
    option = parse_init("loftq", {"loftq_bits": 8, "loftq_iter": 3})
    assert option.loftq == LoftQConfig(bits=8, iters=3)
    assert option.loftq.to_peft() == {"loftq_bits": 8, "loftq_iter": 3}
    assert LoftQConfig.from_peft({}) == LoftQConfig(bits=4, iters=1)
    for bad, match in (({"loftq_bits": 2}, "loftq_bits=2"), ({"loftq_iter": 0}, "loftq_iter=0"),
                       ({"bits": 4}, "key 'bits'"), ([4], "give a dict")):
        with pytest.raises(LoralabError, match=match):
            LoftQConfig.from_peft(bad)


def test_the_config_parses_once_and_writes_peft_values() -> None:
    config = AdapterConfig(target_modules=["q"], init_lora_weights="pissa_niter_4")
    assert config.init == InitOption("pissa", pissa_niter=4)
    assert config_to_peft(config)["init_lora_weights"] == "pissa_niter_4"
    loftq = AdapterConfig(target_modules=["q"], init_lora_weights="loftq",
                          loftq_config={"loftq_iter": 2})
    assert loftq.init.loftq == LoftQConfig(bits=4, iters=2)
    assert config_to_peft(loftq)["loftq_config"] == {"loftq_bits": 4, "loftq_iter": 2}
    with pytest.raises(LoralabError, match="only allowed"):
        InitOption("olora", pissa_niter=3)
    with pytest.raises(LoralabError, match="kind='loftq'"):
        InitOption("loftq")
