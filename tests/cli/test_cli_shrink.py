"""``loralab shrink``: a saved adapter cut to rank r′, its table, and one line on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from loralab.lora import AdapterConfig, inject_lora, load_adapter, lora_layers, save_adapter

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def saved(tmp_path: Path) -> tuple[nn.Module, Path]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 6))
    inject_lora(model, AdapterConfig(r=5, lora_alpha=10, target_modules=["0", "2"]))
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.factors()[1].normal_()
    save_adapter(model, tmp_path / "ad")
    return model, tmp_path / "ad"


def test_shrink_prints_predicted_beside_measured_and_writes_an_adapter(run_cli, tmp_path,
                                                                       capsys) -> None:
    model, src = saved(tmp_path)
    assert run_cli(["shrink", str(src), "--rank", "2", "--out", str(tmp_path / "r2")]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert "Eckart–Young" in rows[0] and "measured" in rows[0]
    for path, layer in lora_layers(model).items():
        delta = layer.delta_weight().detach().double().numpy()
        s = np.linalg.svd(delta, compute_uv=False)
        row = next(r.split() for r in rows[1:] if r.split()[0] == path)
        assert row[1:3] == ["5", "2"]
        assert float(row[4]) == pytest.approx(np.sqrt(np.sum(s[2:] ** 2)), rel=1e-3)
        assert float(row[5]) == pytest.approx(float(row[4]), rel=1e-3)
    assert rows[-1].startswith("2 modules; LoRA parameters")
    fresh = nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 6))
    load_adapter(fresh, tmp_path / "r2")
    assert all(m.r["default"] == 2 for m in lora_layers(fresh).values())


@pytest.mark.parametrize(("args", "says"), [
    (["--rank", "0"], "--rank: 0 is not allowed"),
    (["--rank", "6"], "rank=6 is not allowed; give an integer from 1 to the adapter's rank (5)"),
    (["--energy", "0"], "--energy: '0' is not allowed"),
    (["--energy", "1.5"], "--energy: '1.5' is not allowed"),
    (["--rank", "2", "--energy", "0.5"], "not allowed with argument"),
    (["--rank", "2", "--out-taken"], "already exists; loralab does not overwrite it"),
    (["--rank", "2", "--missing"], "adapter folder"),
])
def test_bad_input_is_one_line_exit_2_and_creates_nothing(run_cli, tmp_path, capsys, args,
                                                           says) -> None:
    _, src = saved(tmp_path)
    (tmp_path / "taken").mkdir()
    out = tmp_path / ("taken" if "--out-taken" in args else "new")
    if "--missing" in args:
        src = tmp_path / "nope"
    argv = ["shrink", str(src), *[a for a in args if a not in ("--out-taken", "--missing")],
            "--out", str(out)]
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and err.startswith("error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ad", "taken"]
    assert not list((tmp_path / "taken").iterdir())
