"""Class 1 (second pass): what is checked is what will be used, after the dtype cast.

A file's tensor can be finite and non-zero and still become ``inf`` or ``0`` in the dtype a
layer or a command computes in. The adapter loader and the matrix readers check after the
cast; a Hypothesis sweep over dtypes (float64/float32/float16/bfloat16/float8), extreme finite
values, shapes and key sets holds the invariant: *loaded, finite and equal to what the file
says (in the layer's dtype), or refused with the model unchanged*.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import one_error_line
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from torch import nn

from loralab.errors import LoralabError
from loralab.lora import AdapterConfig, inject_lora, load_adapter, lora_layers, save_adapter
from loralab.lowrank.matrixio import load_matrix

FAST = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
FILE_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16,
               torch.float8_e4m3fn, torch.float8_e5m2]
MODEL_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
SCALES = [1e-300, 1e-40, 1e-8, 1.0, 1e4, 1e30, 1e200, 1e300]


def _base(dtype: torch.dtype, d: int = 4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, 2)).to(dtype)


def _adapter(tmp: Path, dtype: torch.dtype) -> Path:
    model = _base(dtype)
    inject_lora(model, AdapterConfig(r=2, lora_alpha=2, target_modules=["0", "2"]))
    with torch.no_grad():
        for m in lora_layers(model).values():
            for f in m.factors("default"):
                f.copy_(torch.randn(f.shape) * 0.5)
    return save_adapter(model, tmp / "ad")


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_a_float64_adapter_of_1e300_into_a_float32_model_is_refused(tmp_path):
    folder = _adapter(tmp_path, torch.float64)
    path = folder / "adapter_model.safetensors"
    tensors = load_file(path)
    key = sorted(tensors)[0]
    tensors[key] = torch.full_like(tensors[key], 1e300)
    save_file(tensors, path)
    model = _base(torch.float32)
    before = _snapshot(model)
    with pytest.raises(LoralabError, match=r"overflow: adapter key .* beyond the float32 range"):
        load_adapter(model, folder)
    assert _snapshot(model).keys() == before.keys() and not lora_layers(model)
    tensors[key] = torch.full_like(tensors[key], 1e-300)
    save_file(tensors, path)
    with pytest.raises(LoralabError, match=r"underflow: adapter key .* would become 0"):
        load_adapter(model, folder)
    assert not lora_layers(model)


def test_an_update_beyond_the_layers_range_is_refused(tmp_path):
    folder = _adapter(tmp_path, torch.float64)
    path = folder / "adapter_model.safetensors"
    tensors = {k: v * 1e200 for k, v in load_file(path).items()}   # each finite in float64
    save_file(tensors, path)
    model = _base(torch.float64)
    with pytest.raises(LoralabError, match=r"its update s·B A .* beyond the float64 range"):
        load_adapter(model, folder)
    assert not lora_layers(model)


def test_lora_alpha_1e308_is_refused():
    with pytest.raises(LoralabError, match=r"lora_alpha=1e\+308 is not allowed; it must be at "
                       "most 1e\\+06"):
        AdapterConfig(r=2, lora_alpha=1e308, target_modules=["0"])


@FAST
@given(file_dtype=st.sampled_from(FILE_DTYPES), model_dtype=st.sampled_from(MODEL_DTYPES),
       scale=st.sampled_from(SCALES), keys=st.sampled_from(["all", "drop", "extra"]))
def test_property_adapter_loads_exactly_or_refuses_untouched(file_dtype, model_dtype, scale,
                                                            keys):
    with tempfile.TemporaryDirectory() as tmp:
        folder = _adapter(Path(tmp), torch.float32)
        path = folder / "adapter_model.safetensors"
        wide = {k: v.double() * scale for k, v in load_file(path).items()}
        if keys == "drop":
            wide.pop(sorted(wide)[0])
        elif keys == "extra":
            wide["base_model.model.9.lora_A.weight"] = torch.ones(2, 4, dtype=torch.float64)
        with torch.no_grad():   # what the file can hold: float8/float16 saturate to inf
            stored = {k: v.to(file_dtype) for k, v in wide.items()}
        save_file(stored, path)
        model = _base(model_dtype)
        before = _snapshot(model)
        try:
            load_adapter(model, folder)
        except LoralabError:
            assert not lora_layers(model)
            now = model.state_dict()
            assert now.keys() == before.keys()
            assert all(torch.equal(now[k], before[k]) for k in before)
            return
        for name, layer in lora_layers(model).items():
            for part, f in zip("AB", layer.factors("default"), strict=True):
                file_t = stored[f"base_model.model.{name}.lora_{part}.weight"]
                expect = file_t.to(torch.float64).to(f.dtype)
                assert torch.isfinite(f).all() and torch.equal(f.detach(), expect)
                assert bool(((f == 0) == (file_t.to(torch.float64) == 0)).all())  # no underflow
        assert torch.isfinite(model(torch.ones(1, 4, dtype=model_dtype))).all()


@FAST
@given(file_dtype=st.sampled_from(FILE_DTYPES), use=st.sampled_from(["float32", "float64"]),
       scale=st.sampled_from(SCALES), shape=st.sampled_from([(1, 1), (1, 5), (3, 2), (4, 4)]),
       fmt=st.sampled_from([".safetensors", ".npy"]))
def test_property_matrix_reader_loads_exactly_or_refuses(file_dtype, use, scale, shape, fmt):
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(shape, generator=gen, dtype=torch.float64) * scale
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"m{fmt}"
        if fmt == ".npy":
            if file_dtype not in (torch.float64, torch.float32, torch.float16):
                return                                       # numpy has no bf16/float8
            stored = values.to(file_dtype)
            np.save(path, stored.numpy())
        else:
            stored = values.to(file_dtype)
            save_file({"w": stored}, path)
        try:
            got = load_matrix(str(path), dtype=use).tensor
        except LoralabError:
            return
    wide = stored.to(torch.float64)
    assert torch.isfinite(got).all() and got.dtype == getattr(torch, use)
    assert torch.equal(got, wide.to(got.dtype))
    assert bool(((got == 0) == (wide == 0)).all())             # nothing silently became 0


@pytest.mark.parametrize("argv, match", [
    (["svd", "--ranks", "2"], r"underflow: input .* 64 non-zero entries .* below the float32 "
                              r"range: they would become 0; use --dtype float64"),
    (["svd", "--ranks", "2", "--dtype", "float64"], r"underflow: .* squares vanish in float64; "
                                                    r"scale the matrix up"),
    (["fit", "--rank", "2", "--steps", "3"], r"underflow: input .* below the float32 range"),
])
def test_a_tiny_float64_matrix_is_not_read_as_zeros(run_cli, capsys, tmp_path, argv, match):
    np.save(tmp_path / "tiny.npy", np.full((8, 8), 1e-300))
    code = run_cli([*argv, "--input", str(tmp_path / "tiny.npy"), "--out",
                    str(tmp_path / "o.png"), "--json", str(tmp_path / "o.json")])
    assert code == 2
    assert re.search(match, one_error_line(capsys.readouterr().err))
    assert not (tmp_path / "o.json").exists()


def test_a_float8_matrix_is_read_through_its_exact_values(run_cli, capsys, tmp_path):
    w = (torch.randn(6, 6) * 4).to(torch.float8_e4m3fn)
    save_file({"w": w}, tmp_path / "f8.safetensors")
    code = run_cli(["svd", "--ranks", "2", "--input", str(tmp_path / "f8.safetensors"),
                    "--out", str(tmp_path / "o.png"), "--json", str(tmp_path / "o.json")])
    assert code == 0, capsys.readouterr().err
    data = json.loads((tmp_path / "o.json").read_text())
    sv = torch.linalg.svdvals(w.to(torch.float64))
    assert abs(data["frobenius_norm"] - float(sv.norm())) < 1e-4 * float(sv.norm())
