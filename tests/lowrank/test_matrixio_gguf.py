"""``--input FILE.gguf:KEY`` and ``smollm2:KEY``: a GGUF tensor read as the (d_out, d_in)
matrix the model computes with, equal to what transformers de-quantizes; bad input refused."""

from __future__ import annotations

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")

from loralab.errors import LoralabError  # noqa: E402
from loralab.lowrank.matrixio import list_keys, load_matrix  # noqa: E402


def _write(path, tensors: dict[str, np.ndarray], arch: str = "llama") -> None:
    writer = gguf.GGUFWriter(str(path), arch)
    for name, arr in tensors.items():
        writer.add_tensor(name, arr)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_f32_tensor_round_trips_in_torch_order(tmp_path):
    w = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)   # (d_out, d_in)
    path = tmp_path / "m.gguf"
    _write(path, {"blk.0.w": w, "norm": np.ones(5, np.float32)})
    assert list_keys(path) == ["blk.0.w", "norm"]
    m = load_matrix(f"{path}:blk.0.w", dtype="float64")
    assert m.tensor.shape == (3, 5) and m.source_dtype == "F32"
    np.testing.assert_array_equal(m.tensor.numpy(), w.astype(np.float64))


def test_q8_0_tensor_equals_the_reference_dequantization(tmp_path):
    w = np.random.default_rng(1).standard_normal((4, 64)).astype(np.float32)
    q = gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q8_0)
    path = tmp_path / "q.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("w", q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    m = load_matrix(f"{path}:w")
    ref = gguf.quants.dequantize(q, gguf.GGMLQuantizationType.Q8_0)
    assert m.tensor.shape == (4, 64) and m.source_dtype == "Q8_0"
    np.testing.assert_array_equal(m.tensor.numpy(), ref)
    assert np.abs(ref - w).max() < 0.05 * np.abs(w).max()      # it is w, 8-bit rounded


@pytest.mark.parametrize("spec,match", [
    ("{p}", "holds 2 tensors; pick one with PATH:KEY"),
    ("{p}:norm", r"has shape \(5,\); only 2-D"),
    ("{p}:nope", "key 'nope' is not in"),
])
def test_bad_gguf_specs(tmp_path, spec, match):
    path = tmp_path / "m.gguf"
    _write(path, {"w": np.zeros((2, 5), np.float32), "norm": np.ones(5, np.float32)})
    with pytest.raises(LoralabError, match=match):
        load_matrix(spec.format(p=path))


def test_not_gguf_and_truncated(tmp_path):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"GGML something else")
    with pytest.raises(LoralabError, match="is not a GGUF file"):
        load_matrix(f"{bad}:w")
    good = tmp_path / "m.gguf"
    _write(good, {"w": np.zeros((64, 64), np.float32)})
    bad.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(LoralabError, match="truncated or corrupt"):
        load_matrix(f"{bad}:w")


def test_builtin_model_tensor_equals_transformers_weight(real_folder):
    """``smollm2:blk.0.ffn_down.weight`` is the de-quantized model's ``down_proj`` weight."""
    from safetensors import safe_open

    from loralab.lm.gguf import resolve_matrix_spec

    m = load_matrix(resolve_matrix_spec("smollm2:blk.0.ffn_down.weight"))
    with safe_open(str(real_folder / "model.safetensors"), "pt") as fh:
        w = fh.get_tensor("model.layers.0.mlp.down_proj.weight")
    assert m.tensor.shape == w.shape == (576, 1536)
    assert m.source_dtype == "Q4_1"
    assert bool((m.tensor == w).all())
