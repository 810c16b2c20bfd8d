"""The registry of fine-tuning methods (``loralab.method_specs``): one consistent record per
name ``--methods`` offers, the ``Method`` literal in step with it, and no torch to read it."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from typing import get_args

import pytest

from loralab.choices import DEFAULT_METHODS, METHOD_HELP, METHODS
from loralab.errors import LoralabError
from loralab.method_specs import (
    METHOD_SPECS,
    Init,
    Method,
    MethodSpec,
    full_run,
    method_spec,
    runs_of,
)

SPECS = list(METHOD_SPECS.values())


def test_every_offered_name_has_one_record_and_the_literal_agrees():
    assert tuple(get_args(Method)) == tuple(METHOD_SPECS) == METHODS
    assert list(METHOD_HELP) == list(METHODS)
    assert all(METHOD_SPECS[m].name == m and METHOD_HELP[m] == METHOD_SPECS[m].help
               for m in METHODS)
    assert set(DEFAULT_METHODS) <= set(METHODS)
    assert DEFAULT_METHODS == ("full", "lora", "rslora")


def test_help_lists_every_method_with_its_line():
    from loralab.cli import build_parser

    sub = next(a for a in build_parser()._actions if getattr(a, "choices", None)
               and "finetune" in a.choices)
    help_text = " ".join((act.help or "") for act in sub.choices["finetune"]._actions)
    for name, spec in METHOD_SPECS.items():
        assert f"{name}: {spec.help}" in help_text


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_records_are_consistent(spec: MethodSpec):
    assert spec.help and spec.help == spec.help.strip()
    assert spec.color.startswith("#") and len(spec.color) == 7
    if spec.quantizes:                                     # QLoRA, LoftQ
        assert spec.is_adapter and spec.needs == ("bitsandbytes",)
        assert 1 <= spec.base_bits <= 8
    else:
        assert "bitsandbytes" not in spec.needs
    if spec.init != "plain":
        assert spec.is_adapter and spec.init in get_args(Init)
    if spec.init == "loftq":
        assert spec.quantizes and not spec.quantize_first
    assert spec.residual_base == (spec.init in ("pissa", "olora"))
    assert spec.lr_ratio > 0 and spec.step_cost > 0
    assert (spec.plan == "once") == (not spec.is_adapter)
    if not spec.is_adapter:
        assert (spec.init, spec.scale, spec.dora, spec.base_bits, spec.lr_ratio) == (
            "plain", "alpha/r", False, None, 1.0)
        assert spec.estimate_as == "full"
    else:
        assert spec.estimate_as == ("qlora" if spec.quantizes else "lora")
    assert spec.sweep == (spec.is_adapter and spec.default)
    assert spec.paper_slope == {-1: "negative", 1: "positive", None: None}[spec.paper_sign]


def test_what_each_method_is():
    s = METHOD_SPECS
    assert [m for m in s if not s[m].is_adapter] == ["full"]
    assert [m for m in s if s[m].quantizes] == ["qlora", "loftq"]
    assert [m for m in s if s[m].rslora] == ["rslora"]
    assert [m for m in s if s[m].dora] == ["dora"]
    assert {m: s[m].lr_ratio for m in s if s[m].lr_ratio != 1} == {"loraplus": 16.0}
    assert {m: s[m].init for m in s if s[m].init != "plain"} == {
        "pissa": "pissa", "olora": "olora", "loftq": "loftq"}
    assert [m for m in s if s[m].quantize_first] == ["qlora"]
    assert [m for m in s if s[m].fsdp] == ["full", "lora", "rslora"]
    assert [m for m in s if s[m].sweep] == ["lora", "rslora"]
    assert {m: s[m].paper_sign for m in s if s[m].paper_sign} == {"full": -1, "lora": 1,
                                                                   "dora": -1}


def test_run_label_and_estimate_label_spellings():
    assert METHOD_SPECS["full"].run_label(8, "attn") == "full"
    assert METHOD_SPECS["lora"].run_label(8, "attn") == "lora-r8-attn"
    assert METHOD_SPECS["rslora"].run_label(16, "attn+mlp") == "rslora-r16-attn+mlp"
    assert METHOD_SPECS["full"].estimate_label(8) == "full fine-tuning"
    assert METHOD_SPECS["lora"].estimate_label(8) == "LoRA r=8"
    assert METHOD_SPECS["qlora"].estimate_label(8) == "qlora r=8"
    assert METHOD_SPECS["lora"].estimate_label(0) == "LoRA"


def test_inconsistent_records_are_refused():
    with pytest.raises(LoralabError, match="without an adapter"):
        MethodSpec("full", "x", "#000000", is_adapter=False, plan="once", base_bits=4)
    with pytest.raises(LoralabError, match="runs at ranks"):
        MethodSpec("lora", "x", "#000000", plan="once")
    with pytest.raises(LoralabError, match="quantized base"):
        MethodSpec("loftq", "x", "#000000", init="loftq")
    with pytest.raises(LoralabError, match="init"):
        MethodSpec("lora", "x", "#000000", init="svd")  # type: ignore[arg-type]
    with pytest.raises(LoralabError, match="method 'lora2' is not allowed"):
        MethodSpec("lora2", "x", "#000000")  # type: ignore[arg-type]
    with pytest.raises(LoralabError, match="needs"):
        MethodSpec("qlora", "x", "#000000", base_bits=4, needs=("bnb",))  # type: ignore
    with pytest.raises(LoralabError, match="> 0"):
        MethodSpec("loraplus", "x", "#000000", lr_ratio=0.0)
    assert {f.name for f in fields(MethodSpec)} >= {"name", "help", "is_adapter", "init",
                                                    "base_bits", "lr_ratio", "color"}


def test_lookups_and_run_helpers():
    class Run:
        def __init__(self, method: str, label: str) -> None:
            self.method, self.label = method, label

    runs = [Run("lora", "a"), Run("full", "f"), Run("rslora", "b"), Run("lora", "c")]
    assert full_run(runs).label == "f"
    assert full_run(runs[:1]) is None
    assert [r.label for r in runs_of(runs, "lora")] == ["a", "c"]
    assert runs_of(runs, "dora") == []
    with pytest.raises(LoralabError, match="method 'lroa' is not allowed; choose one of full"):
        runs_of(runs, "lroa")  # type: ignore[arg-type]
    with pytest.raises(LoralabError, match="choose one of full, lora, rslora"):
        method_spec("nope")


def test_colors_agree_with_the_figures():
    from loralab.plots import COLORS
    from loralab.plots.finetune import RSLORA_COLOR
    from loralab.plots.methods import METHOD_COLORS

    assert METHOD_COLORS == {m: s.color for m, s in METHOD_SPECS.items()}
    assert METHOD_COLORS["full"] == COLORS["full"] and METHOD_COLORS["lora"] == COLORS["lora"]
    assert RSLORA_COLOR == METHOD_COLORS["rslora"]
    assert len(set(METHOD_COLORS.values())) == len(METHOD_COLORS)


def test_the_registry_imports_no_torch():
    code = ("import sys; import loralab.method_specs, loralab.choices; "
            "print(sorted(m for m in ('torch', 'numpy', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
