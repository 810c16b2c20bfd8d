"""The studies: the best learning rate against numpy's parabola, the verdict rules on
hand-made runs, and both studies end to end on the quick preset (CLI, files, bad input)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from loralab.cli import main
from loralab.experiment.studies import (
    best_lr_fit,
    lr_curves,
    lr_verdicts,
    placement_verdict,
)
from loralab.results import RunResult
from loralab.results.study import PlacementRow

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _run(method: str, rank: int | None, lr: float, loss: float) -> RunResult:
    return RunResult(label=f"{method}-{rank}-{lr}", method=method, rank=rank, targets="all",
                     modules=[], rslora=False, scaling=None, trainable_params=1,
                     total_params=1, final_val_loss=loss, step_time_s=0.1, tokens_per_s=1.0,
                     flops_per_s=1.0, mfu=0.5, optimizer_state_bytes=0, peak_memory_bytes=0,
                     peak_memory_kind="", wall_s=1.0, lr=lr)


def test_best_lr_fit_is_numpys_parabola_vertex() -> None:
    lrs = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
    losses = [3.0, 2.2, 2.0, 2.3, 3.5]
    i, fit = best_lr_fit(lrs, losses)
    x = np.log10(lrs[1:4])
    a, b, _ = np.polyfit(x, losses[1:4], 2)
    assert i == 2 and math.log10(fit) == pytest.approx(-b / (2 * a), abs=1e-12)
    assert best_lr_fit(lrs, [1, 2, 3, 4, 5]) == (0, 1e-4)          # an edge: the grid's rate
    assert best_lr_fit(lrs, [5, 4, 3, 2, 1]) == (4, 1e-2)


def _curves(full_best: float, lora_best: dict[int, float]) -> list:
    grid = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]

    def losses(best: float) -> list[float]:        # a symmetric bowl in log lr
        return [1 + (math.log10(g) - math.log10(best)) ** 2 for g in grid]

    runs = [_run("full", None, g, v) for g, v in zip(grid, losses(full_best), strict=True)]
    for r, best in lora_best.items():
        runs += [_run("lora", r, g, v) for g, v in zip(grid, losses(best), strict=True)]
    return lr_curves(runs)


def test_the_papers_picture_holds(bilingual) -> None:
    curves = _curves(1e-3, {1: 1e-2, 4: 1e-2, 16: 1e-2})
    assert [c.label for c in curves] == ["full", "lora-r1", "lora-r4", "lora-r16"]
    verdicts, ratios = lr_verdicts(curves)
    assert [v.word for v in verdicts] == ["holds", "holds"]
    assert ratios == pytest.approx({"lora-r1": 10.0, "lora-r4": 10.0, "lora-r16": 10.0})
    for v in verdicts:
        bilingual(v)


def test_one_rank_judges_only_the_ratio(bilingual) -> None:
    verdicts, ratios = lr_verdicts(_curves(1e-3, {4: 1e-2}))
    assert [v.claim for v in verdicts] == ["LoRA's best learning rate is about 10x full "
                                           "fine-tuning's"] and list(ratios) == ["lora-r4"]
    bilingual(verdicts[0])


def test_equal_best_rates_do_not_hold_and_moving_ones_are_named(bilingual) -> None:
    verdicts, ratios = lr_verdicts(_curves(3e-3, {1: 3e-3, 4: 3e-3}))
    assert verdicts[0].word == "does not hold" and ratios["lora-r1"] == pytest.approx(1.0)
    bilingual(verdicts[0])
    verdicts, _ = lr_verdicts(_curves(1e-3, {1: 1e-3, 16: 3e-2}))
    assert verdicts[1].word == "does not hold" and "30.0x across ranks" in verdicts[1].reason
    assert "相差 30.0 倍" in verdicts[1].reason_zh
    for v in verdicts:
        bilingual(v)


def test_some_ranks_near_ten_and_a_middling_spread_are_partly(bilingual) -> None:
    verdicts, _ = lr_verdicts(_curves(1e-3, {1: 1e-2, 4: 1e-3}))
    assert [v.word for v in verdicts] == ["partly", "partly"]
    assert "2 个秩中有 1 个" in verdicts[0].reason_zh
    for v in verdicts:
        bilingual(v)


def test_a_best_at_the_grids_edge_is_partly_and_unresolved(bilingual) -> None:
    curves = _curves(1e-4, {1: 1e-3, 4: 1e-3})
    assert curves[0].at_edge and not curves[1].at_edge
    verdicts, _ = lr_verdicts(curves)
    assert verdicts[0].word == "partly" and "unresolved" in verdicts[0].reason
    assert "full at 0.0001" in verdicts[0].reason
    assert "full 在 0.0001" in verdicts[0].reason_zh and "无法判定" in verdicts[0].reason_zh
    for v in verdicts:
        bilingual(v)


def test_placement_verdict_counts_the_budgets(bilingual) -> None:
    def rows(b: int, attn: float, mlp: float, both: float) -> list[PlacementRow]:
        return [PlacementRow(f"{t}-{b}", t, b, b, 100, 1.0, v)
                for t, v in (("attn", attn), ("mlp", mlp), ("attn+mlp", both))]

    full = [PlacementRow("full", "all weights", None, None, 1000, None, 1.5)]
    v = placement_verdict(full + rows(4, 2.0, 1.9, 1.8) + rows(16, 2.0, 2.0, 1.7))
    assert v.word == "holds" and v.measured_zh["全参微调"] == "1.500"
    bilingual(v)
    v = placement_verdict(rows(4, 2.0, 2.1, 1.8) + rows(16, 2.0, 1.9, 1.7))
    assert v.word == "partly" and "at 1 of 2 budgets" in v.reason
    assert "2 个预算中有 1 个" in v.reason_zh
    assert list(v.measured_zh) == ["预算 r=4（100 个参数）", "预算 r=16（100 个参数）"]
    bilingual(v)
    assert placement_verdict(rows(4, 1.0, 2.0, 2.0)).word == "does not hold"
    bilingual(placement_verdict(rows(4, 1.0, 2.0, 2.0)))


# ---------------------------------------------------------------- end to end (quick preset)

@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def test_lr_and_placement_studies_end_to_end(cache: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "lr"
    code = main(["finetune", "--preset", "quick", "--study", "lr", "--lrs", "1e-2,1e-3",
                 "--ranks", "2", "--steps", "2", "--out", str(out), "--cache", str(cache),
                 "--device", "cpu", "--jobs", "1", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    data = json.loads((out / "results.json").read_text())
    assert [(r["method"], r["lr"]) for r in data["runs"]] == [
        ("full", 1e-3), ("lora", 1e-3), ("full", 1e-2), ("lora", 1e-2)]
    study = data["study"]
    assert [c["label"] for c in study["curves"]] == ["full", "lora-r2"]
    assert all(c["at_edge"] for c in study["curves"])          # two points: an edge each
    assert [v["word"] for v in study["verdicts"]] == ["partly"]    # one rank: the ratio
    assert (out / "lr_study.png").is_file() and not (out / "bridge.png").exists()
    best = {min((r for r in data["runs"] if r["method"] == m), key=lambda r: r["final_val_loss"])
            ["label"] for m in ("full", "lora")}          # an lr study maps its compared runs
    maps = {m["label"] for m in data["intruders"]["maps"]}
    assert best <= maps and len(maps) <= len(best) + 1
    assert "Learning-rate study" in printed and "[partly]" in printed
    f = data["floor"]                  # the study's floor is the experiment's: FLOPs / peak
    flops = f["train_flops"] + f["evaluate_flops"] + f["analysis_flops"]
    assert study["floor_s"] == pytest.approx(flops / f["peak_flops"])
    assert study["wall_s"] == data["wall_s"]
    assert "Learning-rate study" in (out / "results.md").read_text()
    out = tmp_path / "pl"
    code = main(["finetune", "--preset", "quick", "--study", "placement", "--ranks", "4",
                 "--steps", "2", "--out", str(out), "--cache", str(cache), "--device", "cpu",
                 "--jobs", "1", "--no-progress"])
    assert code == 0
    data = json.loads((out / "results.json").read_text())
    rows = data["study"]["placement"]
    assert [(r["targets"], r["rank"]) for r in rows] == [
        ("all weights", None), ("attn", 9), ("mlp", 7), ("attn+mlp", 4)]
    counts = {r["label"]: r["trainable_params"] for r in data["runs"]}
    assert counts["lora-r9-attn"] == 2 * 9 * 4 * 2 * 64           # layers × r × 4 × 2d
    assert counts["lora-r7-mlp"] == 2 * 7 * 2 * (64 + 256)
    assert (out / "placement.png").is_file()


@pytest.mark.parametrize("argv, message", [
    (["--study", "width"], "invalid choice: 'width'"),
    (["--study", "lr", "--lrs", "1e-3,0"], "learning rate '0' is not allowed"),
    (["--study", "lr", "--lrs", "1e-3,nan"], "learning rate 'nan' is not allowed"),
    (["--study", "lr", "--lrs=-1e-3"], "learning rate '-1e-3' is not allowed"),
    (["--study", "lr", "--lrs", "inf"], "learning rate 'inf' is not allowed"),
    (["--study", "lr", "--lrs", "fast"], "learning rate 'fast' is not a number"),
    (["--lrs", "1e-3"], "--lrs is not allowed without --study lr"),
    (["--study", "placement", "--lrs", "1e-3"], "not allowed with the placement study"),
    (["--study", "placement", "--ranks", "1"], "rank 1 is not allowed for the placement"),
    (["--study", "lr", "--methods", "dora"], "--methods is not allowed with --study lr"),
])
def test_study_bad_input_is_one_line_exit_2_nothing_created(run_cli, argv: list[str],
                                                            message: str, tmp_path: Path,
                                                            capsys) -> None:
    code = run_cli(["finetune", "--preset", "quick", "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_placement_on_a_model_matches_peft_counts(llama6, tmp_path: Path) -> None:
    """A user's Llama (hidden 32, k/v to 16, MLP 64): attention q, k, v, o trains 224 per unit
    of rank a block, the MLP gate, up, down 288, all 512; at r_all = 4 the matched ranks
    are 9 and 7, and every run's trainable count is PEFT's for the same LoRA."""
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    from loralab.experiment import ExperimentConfig, RunOptions, run_experiment
    from loralab.results.study_plan import StudyConfig

    model, text = llama6
    config = ExperimentConfig(preset="quick", ranks=(4,), steps=2, model=str(model),
                              data=str(text))
    result = run_experiment(config, RunOptions(device="cpu", cache_dir=str(tmp_path / "c"),
                                               jobs=1), study=StudyConfig("placement"))
    rows = result.study.placement
    assert [(r.targets, r.rank) for r in rows] == [
        ("all weights", None), ("attn", 9), ("mlp", 7), ("attn+mlp", 4)]
    sets = {"attn": ["q_proj", "k_proj", "v_proj", "o_proj"],
            "mlp": ["gate_proj", "up_proj", "down_proj"]}
    sets["attn+mlp"] = sets["attn"] + sets["mlp"]
    for row in rows[1:]:
        base = transformers.AutoModelForCausalLM.from_pretrained(model)
        peft_model = peft.get_peft_model(base, peft.LoraConfig(
            r=row.rank, lora_alpha=16, target_modules=sets[row.targets]))
        assert row.trainable_params == peft_model.get_nb_trainable_parameters()[0]
        assert abs(row.param_ratio - 1) <= 0.05
    assert result.study.verdicts[0].study == "placement"


def test_placement_budget_a_model_cannot_match_is_refused_before_training(llama6,
                                                                          tmp_path: Path) -> None:
    """At r_all = 1 the Llama's attention would need r = 2.3: r = 2 misses by -12.5 %."""
    from loralab.errors import LoralabError
    from loralab.experiment import ExperimentConfig, RunOptions, run_experiment
    from loralab.results.study_plan import StudyConfig

    model, text = llama6
    config = ExperimentConfig(preset="quick", ranks=(1,), steps=2, model=str(model),
                              data=str(text))
    msg = (r"rank 1 is not allowed for the placement study: attn at rank 2 trains 2,688 "
           r"parameters against 3,072 \(-12\.5 %")
    with pytest.raises(LoralabError, match=msg):
        run_experiment(config, RunOptions(device="cpu", cache_dir=str(tmp_path / "c"), jobs=1),
                       out_dir=tmp_path / "o", study=StudyConfig("placement"))
    assert not (tmp_path / "o").exists()
