"""Class 3 and 5 (second pass): every reader of loralab's own state verifies it.

An unfinished folder (the manifest says ``"complete": false``), a ``results.json`` changed
since, a string or a NaN where a loss belongs, a checkpoint that says ``"step": -5``: each is
refused in one line that names the field or the file and the command that repairs it,
before any work; never read as if it were whole.
"""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from conftest import one_error_line
from torch import nn

from loralab.errors import LoralabError

MANIFEST = ".loralab-manifest.json"


@pytest.fixture
def finetune_dir(reference, tmp_path):
    """A finetune folder as a finished run leaves it: results.json and its manifest."""
    from loralab.fileio import output_folder

    _, _, results = reference
    out = tmp_path / "ft"
    with output_folder(out, "finetune", state=(".resume",)) as claim:
        staged = claim.staging()
        (staged / "results.json").write_text(json.dumps(results))
        claim.commit(staged)
    return out


def _report(run_cli, folder, tmp_path) -> int:
    return run_cli(["report", "--finetune", str(folder), "--no-analyses", "--out",
                    str(tmp_path / "site")])


def test_an_unfinished_finetune_folder_is_refused_with_the_repair_command(
        run_cli, capsys, tmp_path, finetune_dir):
    manifest = json.loads((finetune_dir / MANIFEST).read_text())
    manifest["complete"] = False                      # a SIGKILL between the final moves
    (finetune_dir / MANIFEST).write_text(json.dumps(manifest))
    assert _report(run_cli, finetune_dir, tmp_path) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "complete: false" in line
    assert f"rerun the same 'loralab finetune --out {finetune_dir}' command" in line
    assert not (tmp_path / "site").exists()


def test_a_results_json_changed_since_is_refused(run_cli, capsys, tmp_path, finetune_dir):
    data = json.loads((finetune_dir / "results.json").read_text())
    data["runs"][0]["final_val_loss"] = 0.001                      # a better number, typed in
    (finetune_dir / "results.json").write_text(json.dumps(data))
    assert _report(run_cli, finetune_dir, tmp_path) == 2
    assert "results.json changed since loralab wrote it" in one_error_line(
        capsys.readouterr().err)


@pytest.mark.parametrize("field, value, match", [
    ("final_val_loss", "abc", r"runs\[0\]\.final_val_loss is 'abc' \(a str\); a number is "
                              "needed"),
    ("val_loss", [float("nan")], r"runs\[0\]\.val_loss\[0\] is nan; only finite numbers"),
    ("final_val_loss", float("inf"), r"runs\[0\]\.final_val_loss is inf"),
])
def test_a_string_or_nan_where_a_loss_belongs_is_refused(run_cli, capsys, tmp_path, reference,
                                                         field, value, match):
    import re

    from loralab.results import result_from_dict

    _, _, results = reference
    data = copy.deepcopy(results)
    data["runs"][0][field] = value
    with pytest.raises(LoralabError, match=match):
        result_from_dict(data)
    folder = tmp_path / "copied"                       # no manifest: a copied folder
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(data))       # json writes NaN/Infinity
    assert _report(run_cli, folder, tmp_path) == 2
    line = one_error_line(capsys.readouterr().err)
    assert re.search(match, line)
    assert not (tmp_path / "site").exists()


def test_a_genuine_result_passes_the_check(reference):
    from loralab.results import result_from_dict

    result = result_from_dict(reference[2])
    assert all(math.isfinite(r.final_val_loss) for r in result.runs)


@pytest.mark.parametrize("step", [-5, 10**6, "3", True])
def test_a_checkpoint_with_a_step_outside_the_run_is_refused(tmp_path, step):
    from loralab.lm.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = nn.Linear(4, 4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(1, 4)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path / "c", model, opt, 3, {"train_loss": [1.0, 0.9, 0.8]}, "k")
    meta = json.loads((tmp_path / "c.json").read_text())
    meta["step"] = step
    (tmp_path / "c.json").write_text(json.dumps(meta))
    fresh = nn.Linear(4, 4)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(LoralabError, match=f"says step {step!r}, which is not a step of this "
                       r"run \(0\.\.10\); delete it to start over"):
        load_checkpoint(tmp_path / "c", fresh, torch.optim.AdamW(fresh.parameters()), "k",
                        max_step=10)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in before.items())
    meta["step"] = 3
    (tmp_path / "c.json").write_text(json.dumps(meta))
    assert load_checkpoint(tmp_path / "c", fresh, torch.optim.AdamW(fresh.parameters()), "k",
                           max_step=10)["step"] == 3


@pytest.mark.parametrize("shape", [(1, 64), (1, 1)])
def test_fit_at_full_rank_of_a_one_row_matrix_saves_its_numbers_and_figure(
        run_cli, capsys, tmp_path, shape):
    import numpy as np

    np.save(tmp_path / "w.npy", np.random.default_rng(0).standard_normal(shape))
    code = run_cli(["fit", "--input", str(tmp_path / "w.npy"), "--ranks", "1", "--steps", "3",
                    "--out", str(tmp_path / "f.png"), "--json", str(tmp_path / "f.json")])
    assert code == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "f.json").read_text())["fits"][0]["rank"] == 1
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


def test_a_figure_that_cannot_be_drawn_says_why_after_saving_the_numbers(
        run_cli, capsys, tmp_path, monkeypatch):
    import loralab.plots as plots

    def broken(fig, path):
        raise ValueError("Data cannot be log-scaled because all values are <= 0.")

    monkeypatch.setattr(plots, "save_figure", broken)
    code = run_cli(["svd", "--hidden-size", "8", "--ranks", "2", "--out",
                    str(tmp_path / "s.png"), "--json", str(tmp_path / "s.json")])
    assert code == 2
    line = one_error_line(capsys.readouterr().err)
    assert "could not be drawn (Data cannot be log-scaled" in line
    assert f"the numbers are saved in {tmp_path / 's.json'}" in line
    assert json.loads((tmp_path / "s.json").read_text())["shape"] == [8, 8]
