"""The fine-tuning experiment at the quick preset: results, identities, outputs, CLI, resume."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from loralab.cli import main
from loralab.errors import LoralabError
from loralab.experiment import (
    ExperimentConfig,
    ExperimentResult,
    RunOptions,
    parse_targets,
    plan_runs,
    run_experiment,
)
from loralab.experiment.analysis import amplification

ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")


pytestmark = pytest.mark.usefixtures("one_torch_thread")



@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, cache) -> tuple[ExperimentResult, Path]:
    out = tmp_path_factory.mktemp("exp") / "out"
    config = ExperimentConfig(preset="quick", ranks=(2, 4))
    options = RunOptions(device="cpu", cache_dir=str(cache))
    return run_experiment(config, options, out_dir=out), out


# ---------------------------------------------------------------- configuration

def test_parse_targets_presets_and_names() -> None:
    assert parse_targets("attn") == ("attn", ATTN)
    assert parse_targets("attn+mlp") == ("attn+mlp", (*ATTN, "up_proj", "down_proj"))
    assert parse_targets("q_proj,v_proj") == ("q_proj+v_proj", ("q_proj", "v_proj"))
    assert parse_targets("up_proj+down_proj")[0] == "mlp"
    with pytest.raises(LoralabError, match="target module 'x_proj' is not allowed"):
        parse_targets("q_proj,x_proj")


@pytest.mark.parametrize("kwargs, message", [
    ({"preset": "huge"}, "preset 'huge' is not allowed"),
    ({"ranks": (0,)}, "rank 0 is not allowed"),
    ({"ranks": (65,)}, "rank 65 is not allowed; the quick preset's width is d_model=64"),
    ({"targets": ("attn", "lm_head")}, "target module 'lm_head' is not allowed"),
    ({"targets": ()}, "targets is empty"),
    ({"device": "tpu"}, "device 'tpu' is not allowed"),
])
def test_config_rejects_bad_input(kwargs: dict, message: str) -> None:
    how = {k: v for k, v in kwargs.items() if k == "device"}
    with pytest.raises(LoralabError, match=message):
        ExperimentConfig(**{"preset": "quick", **{k: kwargs[k] for k in kwargs.keys() - how}})
        RunOptions(**how)


def test_plan_same_order_full_then_lora_then_rslora() -> None:
    cfg = ExperimentConfig(preset="quick", ranks=(4, 1, 2), targets=("attn", "attn+mlp"))
    labels = [r.label for r in plan_runs(cfg)]
    assert labels == ["full", "lora-r1-attn", "lora-r2-attn", "lora-r4-attn",
                      "lora-r1-attn+mlp", "lora-r2-attn+mlp", "lora-r4-attn+mlp",
                      "rslora-r2-attn+mlp", "rslora-r4-attn+mlp"]
    assert cfg.key() != cfg.with_changes(seed=1).key()
    assert cfg.base_key() == cfg.with_changes(ranks=(8,)).base_key()


# ---------------------------------------------------------------- the SVD bridge, vs numpy

def test_amplification_against_numpy() -> None:
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(10, 8, generator=gen, dtype=torch.float64)
    delta = torch.randn(10, 2, generator=gen, dtype=torch.float64) @ torch.randn(
        2, 8, generator=gen, dtype=torch.float64)
    row = amplification(w, delta, 2, "lora")
    u, s, vt = np.linalg.svd(delta.numpy())
    proj = np.linalg.norm(u[:, :2].T @ w.numpy() @ vt[:2].T)
    assert row.proj_delta == pytest.approx(proj, rel=1e-9)
    assert row.factor == pytest.approx(np.linalg.norm(delta.numpy()) / proj, rel=1e-9)
    sw = np.linalg.svd(w.numpy(), compute_uv=False)
    assert row.proj_w == pytest.approx(float(np.sqrt(np.sum(sw[:2] ** 2))), rel=1e-9)
    # W's own singular directions capture the most of W among all rank-2 projections.
    assert row.proj_w >= row.proj_delta and row.proj_w >= row.proj_random


# ---------------------------------------------------------------- the experiment

def test_json_has_the_promised_fields(experiment) -> None:
    result, out = experiment
    data = json.loads((out / "results.json").read_text())
    assert data["base_val_loss"] == pytest.approx(result.base_val_loss)
    assert len(data["runs"]) == 1 + 2 * 2 + 2
    for run in data["runs"]:
        assert run["method"] == run["label"].split("-")[0]
        assert run["rslora"] == (run["method"] == "rslora")
        for key in ("rank", "targets", "trainable_params", "total_params", "final_val_loss",
                    "step_time_s", "tokens_per_s", "flops_per_s", "optimizer_state_bytes",
                    "peak_memory_bytes", "val_loss", "val_steps", "initial_val_loss",
                    "steps_to_full_loss", "base_weight_bytes"):
            assert key in run
    for key in ("merge_checks", "spectra", "truncation", "amplification", "rslora", "samples",
                "targets"):
        assert key in data


def test_parameter_and_optimizer_counts_follow_the_formulas(experiment) -> None:
    result, _ = experiment
    spec = result.config.spec.model
    d, f, layers = spec.d_model, spec.d_ff, spec.n_layers
    full = result.run("full")
    assert full.trainable_params == full.total_params == result.base.params
    for run in result.runs:
        if run.method in ("lora", "rslora"):
            r = run.rank
            expect = layers * 4 * r * (d + d)
            if run.targets == "attn+mlp":
                expect += layers * r * ((d + f) + (f + d))
            assert run.trainable_params == expect, run.label
            assert run.total_params == result.base.params + expect
            assert run.scaling == pytest.approx(16 / (math.sqrt(r) if run.rslora else r))
        n_tensors = (2 * len(run.modules) * layers if run.method != "full"
                     else len(list(torch.nn.Module.parameters(_base_model(result)))))
        # AdamW state: two fp32 moments per trainable value, one fp32 step per tensor.
        assert run.optimizer_state_bytes == 8 * run.trainable_params + 4 * n_tensors


def _base_model(result: ExperimentResult):
    from loralab.lm.checkpoint import load_weights
    from loralab.lm.model import TinyLM

    model = TinyLM(result.config.spec.model)
    model.load_state_dict(load_weights(result.base.path)[0])
    return model.eval()


def test_fine_tuning_helps_and_the_base_is_clearly_worse(experiment) -> None:
    result, _ = experiment
    for run in result.runs:
        assert run.final_val_loss < result.base_val_loss, run.label
        assert run.val_steps[-1] == result.config.spec.lora.steps
    assert result.base_val_loss > 1.5 * result.run("full").final_val_loss
    rates = result.analysis.pig_latin_word_rate
    assert rates["base"] < rates["full"]


def test_merged_model_matches_and_adapters_reload(experiment) -> None:
    result, _ = experiment
    checks = result.analysis.merge_checks
    assert len(checks) == 6
    for c in checks:
        assert c.max_abs_logit_diff_fp64 <= 1e-9 and c.passed_fp64, c   # the identity
        # fp32: rounding only, a few ulps of the largest logit (the target is 1e-5 absolute).
        assert c.max_abs_logit_diff <= 1e-6 * max(1.0, c.max_abs_logit) * 4, c
        assert c.passed == (c.max_abs_logit_diff <= 1e-5 and c.reload_max_abs_logit_diff
                            <= 1e-5)
        assert c.reload_max_abs_logit_diff == 0.0, c
        assert c.val_loss_merged == pytest.approx(c.val_loss_unmerged, abs=1e-5)


def test_saved_adapter_loads_in_peft_with_the_same_logits(experiment) -> None:
    peft = pytest.importorskip("peft")
    from safetensors.torch import load_file

    from loralab.lora import load_adapter

    result, out = experiment
    folder = out / "adapters" / "lora-r4-attn+mlp"
    ours = _base_model(result)
    load_adapter(ours, folder)
    cfg = json.loads((folder / "adapter_config.json").read_text())
    theirs = peft.inject_adapter_in_model(
        peft.LoraConfig(r=cfg["r"], lora_alpha=cfg["lora_alpha"],
                        target_modules=cfg["target_modules"]), _base_model(result))
    state = load_file(folder / "adapter_model.safetensors")
    peft.set_peft_model_state_dict(theirs, {k.removeprefix("base_model.model."): v
                                            for k, v in state.items()})
    x = torch.randint(0, 70, (2, 16))
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs.eval()(x), atol=1e-5, rtol=1e-5)


def test_spectra_truncation_and_rslora_tables(experiment) -> None:
    result, _ = experiment
    a, spec = result.analysis, result.config.spec.model
    assert len(a.spectra) == 6 * spec.n_layers
    for s in a.spectra:
        sv = s.singular_values
        assert sv == sorted(sv, reverse=True) and len(sv) == min(s.shape)
        assert 1 <= s.rank90 <= min(s.shape)
        assert s.delta_norm == pytest.approx(math.sqrt(sum(v * v for v in sv)), rel=1e-9)
    for t in result.config.targets:
        rows = [r for r in a.truncation if r.targets == t]
        kept = [r.energy_kept for r in rows]
        assert [r.rank for r in rows] == [2, 4, None]
        assert kept == sorted(kept) and kept[-1] == 1.0
        assert rows[0].val_loss_lora == result.run(f"lora-r2-{t}").final_val_loss
    assert [r.rank for r in a.rslora] == [2, 4]
    for row in a.amplification.rows:
        assert row.proj_w >= row.proj_delta - 1e-9
    assert [t.lora_label for t in a.targets_by_set] == ["lora-r4-attn", "lora-r4-attn+mlp",
                                                        "rslora-r4-attn+mlp"]
    tg = a.targets
    assert tg == a.targets_by_set[1]
    assert tg.optimizer_state_ratio == pytest.approx(
        result.run("full").optimizer_state_bytes
        / result.run("lora-r4-attn+mlp").optimizer_state_bytes)


def test_outputs_are_written_and_resume_state_removed(experiment) -> None:
    result, out = experiment
    for name in ("results.md", "results.json", "samples.txt", "convergence.png", "bridge.png",
                 "cost.png"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "convergence.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    adapters = sorted(p.name for p in (out / "adapters").iterdir())
    assert adapters == sorted(r.label for r in result.runs if r.method != "full")
    assert not (out / ".resume").exists()
    text = (out / "results.md").read_text()
    assert "| full |" in text and "Targets" in text and "prompt:" in text


def test_result_round_trips_through_json(experiment) -> None:
    from loralab.experiment import format_tables, result_from_dict

    result, out = experiment
    from loralab.fileio import to_jsonable

    saved = json.loads((out / "results.json").read_text())
    back = result_from_dict(saved)
    assert json.loads(json.dumps(to_jsonable(back.to_dict()))) == saved
    assert format_tables(back) == format_tables(result)
    with pytest.raises(LoralabError, match="not a loralab finetune result"):
        result_from_dict({"config": {}})


def test_forgetting_and_intruders_for_every_run(experiment) -> None:
    from loralab.results.verdict import VERDICT_WORDS

    result, out = experiment
    a, before = result.analysis, result.base.general_val_loss
    assert before is not None and a.forgetting is not None and a.intruders is not None
    assert [p.label for p in a.forgetting.points] == [r.label for r in result.runs]
    for p, r in zip(a.forgetting.points, result.runs, strict=True):
        assert p.forgetting == r.general_val_loss - before
        assert p.target_val_loss == r.final_val_loss
    s = a.intruders
    assert {r.label for r in s.rows} == {r.label for r in result.runs}   # full, lora, rslora
    for row in s.rows:                    # counts grow with ε and stay within top-k
        assert all(0 <= c <= s.top_k for c in row.mean_counts)
        assert row.mean_counts == sorted(row.mean_counts)
        assert row.at_epsilon == row.mean_counts[row.epsilons.index(s.epsilon)]
    for m in s.maps:
        sim = np.array(m.similarity)
        assert sim.shape[0] == s.top_k and ((sim >= 0) & (sim <= 1 + 1e-6)).all()
    first = s.lambda_sweep[0]
    run = result.run(first.label)
    assert first.lam == 1.0 and first.target_val_loss == run.final_val_loss
    assert [p.lam for p in s.lambda_sweep] == [1.0, 0.75, 0.5, 0.25]
    for v in (a.forgetting.verdict, s.verdict):
        assert v.word in VERDICT_WORDS
    text = (out / "results.md").read_text()
    assert "Verdicts" in text and "Intruder dimensions" in text
    assert (out / "forgetting.png").stat().st_size > 0 and (out / "intruders.png").is_file()


def test_figures_are_figures(experiment) -> None:
    from matplotlib.figure import Figure

    from loralab.plots.finetune import bridge_figure, convergence_figure, cost_figure

    result, _ = experiment
    for fn, n_axes in ((convergence_figure, 2), (bridge_figure, 3), (cost_figure, 2)):
        fig = fn(result)
        assert isinstance(fig, Figure) and len(fig.axes) == n_axes


def test_ctrl_c_then_rerun_resumes_with_the_same_numbers(experiment, cache,
                                                         tmp_path: Path) -> None:
    result, _ = experiment
    config = ExperimentConfig(preset="quick", ranks=(2,), targets=("attn",))
    options = RunOptions(device="cpu", cache_dir=str(cache))
    seen = {"n": 0}

    def progress(label: str, steps: int) -> None:
        if label == "lora-r2-attn":
            seen["n"] += steps
            if seen["n"] == 25:
                signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, options, out_dir=tmp_path, progress=progress)
    state = tmp_path / ".resume" / config.key()
    assert (state / "full.done.safetensors").is_file()
    assert (state / "lora-r2-attn.ckpt.json").is_file()
    again = run_experiment(config, options, out_dir=tmp_path)
    resumed = again.run("lora-r2-attn")
    assert resumed.resumed_from == 26
    ref = result.run("lora-r2-attn")
    assert resumed.val_loss == pytest.approx(ref.val_loss, abs=1e-6)
    assert again.run("full").final_val_loss == result.run("full").final_val_loss
    f = again.floor                                 # full was restored, not run: not counted
    assert f.restored_runs == 1 and "1 run restored from an earlier invocation" in f.line()
    steps = config.spec.lora.steps
    assert f.train_flops == pytest.approx(sum(steps * r.flops_per_s * r.step_time_s
                                              for r in again.runs if r.method != "full"))


# ---------------------------------------------------------------- CLI

def test_cli_runs_and_writes_json(cache, tmp_path: Path, capsys) -> None:
    code = main(["finetune", "--preset", "quick", "--ranks", "2", "--targets", "q_proj,v_proj",
                 "--out", str(tmp_path / "o"), "--json", str(tmp_path / "r.json"),
                 "--cache", str(cache), "--device", "cpu", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    data = json.loads((tmp_path / "r.json").read_text())
    assert [r["targets"] for r in data["runs"]] == ["all", "q_proj+v_proj", "q_proj+v_proj"]
    assert "lora-r2-q_proj+v_proj" in captured.out and "Sample generations" in captured.out
    assert (tmp_path / "o" / "adapters" / "lora-r2-q_proj+v_proj").is_dir()


@pytest.mark.parametrize("argv, message", [
    (["--preset", "huge"], "invalid choice: 'huge'"),
    (["--ranks", "0"], "rank 0 is not allowed"),
    (["--ranks", "80"], "rank 80 is not allowed"),
    (["--targets", "attn", "x_proj"], "target module 'x_proj' is not allowed"),
    (["--device", "tpu"], "invalid choice: 'tpu'"),
    (["--threads", "-1"], "--threads -1 is not allowed"),
    (["--intruder-epsilon", "0"], "epsilon=0.0 is not allowed"),
    (["--intruder-lambdas", "0.5,1.5"], "lambda=1.5 is not allowed"),
    (["--intruder-top-k", "65"], "--intruder-top-k 65 is not allowed"),
])
def test_cli_bad_input_is_one_line_and_exit_2(run_cli,
                                              argv: list[str], message: str, tmp_path: Path,
                                              capsys) -> None:
    code = run_cli(["finetune", "--preset", "quick", "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_cli_unwritable_output_and_corrupt_checkpoint(cache, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["finetune", "--preset", "quick", "--out", str(blocker)]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["finetune", "--preset", "quick", "--out", str(tmp_path / "a" / "b")]) == 2
    assert "does not exist" in capsys.readouterr().err
    config = ExperimentConfig(preset="quick", ranks=(2,), targets=("attn",))
    state = tmp_path / "o" / ".resume" / config.key()
    state.mkdir(parents=True)
    (state / "full.ckpt.json").write_text("{broken")
    code = main(["finetune", "--preset", "quick", "--ranks", "2", "--targets", "attn",
                 "--out", str(tmp_path / "o"), "--cache", str(cache), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot be read" in err and "Traceback" not in err
    assert not (tmp_path / "o" / "results.json").exists()
    bad_cache = tmp_path / "cache"
    bad_cache.mkdir()
    (bad_cache / f"base-{config.base_key()}.safetensors").write_bytes(b"not safetensors")
    code = main(["finetune", "--preset", "quick", "--ranks", "2", "--targets", "attn",
                 "--out", str(tmp_path / "o2"), "--cache", str(bad_cache), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "is corrupt or not safetensors" in err and "Traceback" not in err


def test_the_floor_counts_at_least_the_training_matmuls_and_the_run_cannot_beat_it(experiment):
    from loralab.experiment import result_from_dict

    result, _ = experiment
    f, spec = result.floor, result.config.spec
    m = spec.model
    # independent count: each block's q, k, v, o (d×d) and MLP (d×4d, 4d×d), the head (d×V)
    matmul = m.n_layers * (4 * m.d_model ** 2 + 8 * m.d_model ** 2) + m.d_model * m.vocab_size
    tokens = spec.full.batch_size * m.block_size
    assert f.train_flops >= spec.full.steps * 6 * tokens * matmul       # full FT alone
    assert f.evaluate_flops > 0 and f.analysis_flops > 0
    assert math.isclose(f.floor_s, f.flops / f.peak_flops)
    assert f.wall_s == result.wall_s and f.ratio >= 1.0        # no run beats its arithmetic
    # runs side by side: the machine's peak is the sum of the processes' (each measured its
    # share while all multiplied at once), so the peak is at least one run's
    one_run = min(r.flops_per_s / r.mfu for r in result.runs)
    assert f.peak_flops >= one_run * (1 - 1e-9)
    assert result_from_dict(json.loads(json.dumps(result.to_dict()))).floor == f


def test_the_merge_tolerance_is_1e5_or_twice_fp32s_own_error():
    from loralab.experiment.analysis import MERGE_TOL, merge_tolerance

    assert merge_tolerance(1e-7) == MERGE_TOL == 1e-5
    assert merge_tolerance(8.1e-5) == pytest.approx(1.62e-4)


def test_the_floor_of_runs_side_by_side_uses_the_sum_of_their_peaks(experiment):
    from loralab.experiment.context import RunContext
    from loralab.experiment.floor import experiment_floor
    from loralab.experiment.workload import load_workload

    result, _ = experiment
    work = load_workload(result.config, RunContext(options=result.options,
                                                   device=torch.device("cpu")))
    one = experiment_floor(result, work, work.base, 1)
    two = experiment_floor(result, work, work.base, 2)
    assert two.flops == one.flops and math.isclose(two.peak_flops, 2 * one.peak_flops)
    assert math.isclose(two.floor_s, one.floor_s / 2)
