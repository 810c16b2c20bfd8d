"""A study's plan: the learning-rate grid's checks, the matched ranks, the runs it plans."""

from __future__ import annotations

import math

import pytest

from loralab.errors import LoralabError
from loralab.lm.model import TinyLM, TinyLMConfig
from loralab.results import ExperimentConfig
from loralab.results.study_plan import (
    DEFAULT_LRS,
    PLACEMENT_TOLERANCE,
    REAL_LRS,
    REAL_STUDY_RANKS,
    StudyConfig,
    check_lrs,
    placement_ranks,
    set_width,
    tiny_widths,
)


def _lora_params(model: TinyLMConfig, label: str, rank: int) -> int:
    """Independent count: r·(d_in + d_out) summed over the set's nn.Linear layers."""
    from loralab.results.presets import TARGET_PRESETS

    net = TinyLM(model)
    mods = TARGET_PRESETS[label]
    return sum(rank * (m.in_features + m.out_features) for name, m in net.named_modules()
               if name.rsplit(".", 1)[-1] in mods)


@pytest.mark.parametrize("label", ["attn", "mlp", "attn+mlp"])
def test_set_width_is_the_sum_of_d_in_plus_d_out(label: str) -> None:
    model = TinyLMConfig(d_model=32, n_layers=2, n_heads=4, block_size=16, vocab_size=40)
    assert set_width(model, label) * 3 == _lora_params(model, label, 3)


@pytest.mark.parametrize("rank_all", [4, 8, 16])
def test_placement_ranks_match_the_budget_within_the_tolerance(rank_all: int) -> None:
    model = ExperimentConfig(preset="default").spec.model
    ranks = placement_ranks(tiny_widths(model), rank_all)
    assert ranks["attn+mlp"] == rank_all
    budget = _lora_params(model, "attn+mlp", rank_all)
    for label, r in ranks.items():
        assert abs(_lora_params(model, label, r) / budget - 1) <= PLACEMENT_TOLERANCE
    # d_ff = 4d: attn trains 8d per unit of rank, the MLP 10d, all 18d
    assert ranks["attn"] == round(rank_all * 18 / 8) and ranks["mlp"] == round(rank_all * 1.8)


def test_a_rank_whose_counts_cannot_match_is_refused() -> None:
    model = ExperimentConfig(preset="default").spec.model
    with pytest.raises(LoralabError, match="rank 1 is not allowed for the placement study"):
        placement_ranks(tiny_widths(model), 1)
    with pytest.raises(LoralabError, match="past the rank bound 8"):
        placement_ranks(tiny_widths(model), 4, max_rank=8)
    with pytest.raises(LoralabError, match="rank 1 is not allowed"):
        StudyConfig("placement").prepare(ExperimentConfig(preset="default", ranks=(1, 4)))


@pytest.mark.parametrize("lrs, message", [
    ((), "grid is empty"),
    ((1e-3, 0.0), "learning rate 0.0 is not allowed"),
    ((-1e-3,), "learning rate -0.001 is not allowed"),
    ((math.nan,), "learning rate nan is not allowed"),
    ((math.inf, 1e-3), "learning rate inf is not allowed"),
    ((True,), "learning rate True is not allowed"),
    ((1e-3, 1.001e-3), "round to one label"),
])
def test_bad_grids_are_refused(lrs: tuple, message: str) -> None:
    with pytest.raises(LoralabError, match=message):
        check_lrs(lrs)
    with pytest.raises(LoralabError, match=message):
        StudyConfig("lr", lrs)


def test_grid_is_sorted_and_deduplicated() -> None:
    assert check_lrs((1e-2, 1e-4, 1e-2, 1e-3)) == (1e-4, 1e-3, 1e-2)


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "width"}, "study 'width' is not allowed; choose one of lr, placement"),
    ({"name": "placement", "lrs": (1e-3,)}, "not allowed with the placement study"),
])
def test_bad_studies_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(LoralabError, match=message):
        StudyConfig(**kwargs)


def test_placement_on_a_model_matches_smollm2s_counts_from_its_widths() -> None:
    """SmolLM2-135M (d = 576, d_ff = 1536, k/v to 192, 30 layers): attention trains
    3,840 per unit of rank a layer, the MLP (gate, up, down) 6,336, both 10,176."""
    config = StudyConfig("placement").prepare(
        ExperimentConfig(preset="smollm2", ranks=REAL_STUDY_RANKS["placement"]))
    assert config.targets == ("attn", "mlp", "attn+mlp")
    d, f, kv = 576, 1536, 192
    attn, mlp = 2 * (d + d) + 2 * (d + kv), 3 * (d + f)
    widths = {"attn": 30 * attn, "mlp": 30 * mlp, "attn+mlp": 30 * (attn + mlp)}
    sets = [("attn", ("q_proj",)), ("mlp", ("up_proj",)), ("all", ("q_proj", "up_proj"))]
    runs = StudyConfig("placement").runs(config, sets, widths, max_rank=kv)
    assert [(r.rank, r.targets) for r in runs[1:]] == [
        (21, "attn"), (13, "mlp"), (8, "all"), (85, "attn"), (51, "mlp"), (32, "all")]
    for r_all, (a, m, _) in zip((8, 32), (runs[1:4], runs[4:7]), strict=True):
        budget = r_all * widths["attn+mlp"]
        assert abs(a.rank * widths["attn"] / budget - 1) <= PLACEMENT_TOLERANCE
        assert abs(m.rank * widths["mlp"] / budget - 1) <= PLACEMENT_TOLERANCE
    with pytest.raises(LoralabError, match="rank 4 is not allowed for the placement study: mlp"
                                           ".* ranks that match here: 3,5,6,7$"):
        StudyConfig("placement").runs(config.with_changes(ranks=(4,)), sets, widths)
    assert len(StudyConfig("placement").runs(config, [])) == 7   # before the model loads


def test_lr_plan_runs_every_kind_at_every_rate_with_its_own_label() -> None:
    study = StudyConfig("lr", (3e-3, 1e-3))
    config = study.prepare(ExperimentConfig(preset="quick", ranks=(1, 4),
                                            targets=("attn", "attn+mlp"), methods=("dora",)))
    assert config.methods == ("full", "lora") and config.targets == ("attn+mlp",)
    runs = study.runs(config, [("attn+mlp", ("q_proj",))])
    assert [(r.method, r.rank, r.lr) for r in runs] == [
        ("full", None, 1e-3), ("lora", 1, 1e-3), ("lora", 4, 1e-3),
        ("full", None, 3e-3), ("lora", 1, 3e-3), ("lora", 4, 3e-3)]
    labels = [r.label for r in runs]
    assert len(set(labels)) == len(labels) and labels[0] == "full-lr0.001"
    assert labels[2] == "lora-r4-attn+mlp-lr0.001"


def test_lr_default_grid_is_the_tiny_lms_or_the_real_models() -> None:
    assert StudyConfig("lr").grid(ExperimentConfig(preset="quick")) == DEFAULT_LRS
    assert StudyConfig("lr").grid(ExperimentConfig(preset="quick", model="m")) == REAL_LRS
    assert all(b / a == pytest.approx(10 ** 0.5, rel=0.06)
               for a, b in zip(DEFAULT_LRS, DEFAULT_LRS[1:], strict=False))


def test_placement_plan_is_full_then_three_sets_per_budget() -> None:
    study = StudyConfig("placement")
    config = study.prepare(ExperimentConfig(preset="default", ranks=(4, 16)))
    assert config.targets == ("attn", "mlp", "attn+mlp")
    runs = study.runs(config, [])
    assert [(r.method, r.rank, r.targets) for r in runs] == [
        ("full", None, "all"), ("lora", 9, "attn"), ("lora", 7, "mlp"),
        ("lora", 4, "attn+mlp"), ("lora", 36, "attn"), ("lora", 29, "mlp"),
        ("lora", 16, "attn+mlp")]
    assert all(r.lr is None for r in runs)
