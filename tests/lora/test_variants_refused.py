"""Every LoRA variant PEFT 0.21 carries that loralab does not implement is refused by name.

For each field of ``peft.LoraConfig`` that switches a variant on (KaSA, VeLoRA, MonteCLoRA,
BD-LoRA, ...), a real ``LoraConfig`` with it set goes through :func:`inject_lora` (its dict
and an ``adapter_config.json`` take the same path): one ``LoralabError`` line naming the
field and the method, and the model unchanged. The same for the ``init_lora_weights`` values
(MiCA, EVA, ...). And no field of PEFT's ``LoraConfig`` is unaccounted for.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

peft = pytest.importorskip("peft")
lora_config = pytest.importorskip("peft.tuners.lora.config")

from loralab.errors import LoralabError  # noqa: E402
from loralab.lora import config as ours  # noqa: E402
from loralab.lora import inject_lora, load_adapter  # noqa: E402
from loralab.lora.variants import FIELD_VARIANTS, INIT_VARIANTS  # noqa: E402

C = lora_config
VALUES = {
    "kasa_config": lambda: C.KasaConfig(), "velora_config": lambda: C.VeloraConfig(),
    "monteclora_config": lambda: C.MontecloraConfig(), "use_bdlora": lambda: C.BdLoraConfig(),
    "arrow_config": lambda: C.ArrowConfig(), "eva_config": lambda: C.EvaConfig(),
    "corda_config": lambda: C.CordaConfig(), "lora_ga_config": lambda: C.LoraGAConfig(),
    "alora_invocation_tokens": lambda: [1, 2], "use_qalora": lambda: True,
    "layer_replication": lambda: [[0, 1]], "megatron_config": lambda: {"num_layers": 2},
}
# implemented, or being implemented beside this work: not variants to refuse here
ELSEWHERE = {"trainable_token_indices", "target_parameters"}


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))


def assert_refused(config: object, match: str) -> None:
    model = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(LoralabError, match=match) as err:
        inject_lora(model, config)
    assert "\n" not in str(err.value)
    assert all(isinstance(m, nn.Linear | nn.ReLU) for m in model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("field", sorted(FIELD_VARIANTS))
def test_each_variant_field_is_refused_by_name(field: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = peft.LoraConfig(target_modules=["0"], **{field: VALUES[field]()})
    name = FIELD_VARIANTS[field].split(" ")[0]
    assert_refused(config, rf"LoraConfig: {field}=.* is not supported by loralab: "
                           rf"{name}.* is not implemented; leave {field} unset")


@pytest.mark.parametrize("init", sorted(INIT_VARIANTS))
def test_each_variant_init_is_refused_by_name(init: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = peft.LoraConfig(target_modules=["0"], init_lora_weights=init)
    if init in ("eva", "corda"):          # PEFT fills in the variant's config: named first
        config = {**config.to_dict(), f"{init}_config": None, "peft_type": "LORA"}
    name = INIT_VARIANTS[init].split(" ")[0]
    assert_refused(config, rf"init_lora_weights='{init}' is not allowed; .*\({name}.* is not "
                           "implemented\\)")


def test_a_saved_kasa_adapter_is_refused_on_load(tmp_path: Path) -> None:
    peft.get_peft_model(tiny(), peft.LoraConfig(target_modules=["0"])).save_pretrained(tmp_path)
    path = tmp_path / "adapter_config.json"
    cfg = json.loads(path.read_text())
    cfg["kasa_config"] = {"beta": 0.0001, "gamma": 0.001}
    path.write_text(json.dumps(cfg))
    with pytest.raises(LoralabError, match="adapter_config.json: kasa_config=.* KaSA"):
        load_adapter(tiny(), tmp_path)


def test_every_peft_field_is_implemented_described_or_refused() -> None:
    known = ours._FIELDS | ours._DESCRIPTIVE | set(FIELD_VARIANTS) | ELSEWHERE
    fields = {f.name for f in dataclasses.fields(peft.LoraConfig)}
    assert not fields - known, f"PEFT fields loralab does not account for: {fields - known}"
