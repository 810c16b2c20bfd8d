"""loralab.lowrank.matrixio: --input PATH[:KEY] for .npy and .safetensors, never a pickle."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from loralab.errors import LoralabError
from loralab.lowrank.matrixio import list_keys, load_matrix, parse_spec


def test_npy_round_trip_in_both_dtypes(tmp_path):
    a = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    np.save(tmp_path / "w.npy", a)
    m = load_matrix(str(tmp_path / "w.npy"), dtype="float64")
    assert m.tensor.dtype == torch.float64 and m.key is None and m.source_dtype == "float64"
    np.testing.assert_array_equal(m.tensor.numpy(), a)
    m32 = load_matrix(str(tmp_path / "w.npy"))
    assert m32.tensor.dtype == torch.float32
    np.testing.assert_allclose(m32.tensor.numpy(), a, rtol=1e-7)
    assert m32.label == "w.npy"


@pytest.mark.parametrize("dtype", [np.float16, np.int32, np.bool_, ">f8"])
def test_npy_other_real_dtypes_become_float(tmp_path, dtype):
    a = (np.arange(6).reshape(2, 3) % 2).astype(dtype)
    np.save(tmp_path / "w.npy", a)
    np.testing.assert_array_equal(load_matrix(str(tmp_path / "w.npy")).tensor.numpy(),
                                  a.astype(np.float32))


def test_safetensors_keys(tmp_path):
    w = torch.randn(5, 3)
    path = tmp_path / "m.safetensors"
    save_file({"layer.weight": w, "layer.bias": torch.randn(5), "h": torch.randn(2, 2).half()},
              str(path))
    m = load_matrix(f"{path}:layer.weight")
    assert torch.equal(m.tensor, w) and m.key == "layer.weight"
    assert m.label == "m.safetensors:layer.weight"
    assert load_matrix(f"{path}:h").source_dtype == "float16"
    assert list_keys(path) == ["h", "layer.bias", "layer.weight"]
    with pytest.raises(LoralabError, match="holds 3 tensors.*'h', 'layer.bias', 'layer.weight'"):
        load_matrix(str(path))
    with pytest.raises(LoralabError, match="key 'nope' is not in .*keys: 'h', 'layer.bias'"):
        load_matrix(f"{path}:nope")
    with pytest.raises(LoralabError, match=r"'layer.bias'.*shape \(5,\); only 2-D"):
        load_matrix(f"{path}:layer.bias")
    one = tmp_path / "one.safetensors"
    save_file({"only": w}, str(one))
    assert torch.equal(load_matrix(str(one)).tensor, w)          # one tensor: no key needed


def test_a_file_name_with_a_colon_still_loads(tmp_path):
    path = tmp_path / "a:b.npy"
    np.save(path, np.ones((2, 2)))
    assert parse_spec(str(path)) == (path, None)
    assert load_matrix(str(path)).tensor.shape == (2, 2)


def test_pickles_are_never_loaded(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(LoralabError, match="pickle"):
        load_matrix(str(tmp_path / "obj.npy"))

    class Boom:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    (tmp_path / "evil.npy").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(LoralabError, match="not a valid .npy"):
        load_matrix(str(tmp_path / "evil.npy"))
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("make, needle", [
    (lambda p: np.save(p / "x.npy", np.zeros((2, 3, 4))), r"shape \(2, 3, 4\); only 2-D"),
    (lambda p: np.save(p / "x.npy", np.zeros(5)), r"shape \(5,\)"),
    (lambda p: np.save(p / "x.npy", np.zeros((0, 3))), "empty"),
    (lambda p: np.save(p / "x.npy", np.array([[1.0, np.nan], [np.inf, 0]])),
     r"2 NaN/Inf entries \(first at row 0, column 1\)"),
    (lambda p: np.save(p / "x.npy", np.ones((2, 2), dtype=np.complex64)), "complex64"),
    (lambda p: np.save(p / "x.npy", np.array([["a", "b"]])), "only real"),
    (lambda p: np.save(p / "x.npy", np.full((2, 2), 1e300)), "float32 range"),
    (lambda p: (p / "x.npy").write_bytes(b"not an array"), "not a valid .npy"),
    (lambda p: (p / "x.npy").write_bytes(b"\x93NUMPY\x01\x00garbage"), "not a valid .npy"),
])
def test_bad_npy(tmp_path, make, needle):
    make(tmp_path)
    with pytest.raises(LoralabError, match=needle):
        load_matrix(str(tmp_path / "x.npy"))


def test_truncated_npy(tmp_path):
    np.save(tmp_path / "w.npy", np.ones((50, 50)))
    data = (tmp_path / "w.npy").read_bytes()
    (tmp_path / "w.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(LoralabError, match="not a valid .npy"):
        load_matrix(str(tmp_path / "w.npy"))


def test_bad_safetensors(tmp_path):
    (tmp_path / "g.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}xxxxx")
    with pytest.raises(LoralabError, match="not a valid safetensors"):
        load_matrix(str(tmp_path / "g.safetensors"))
    save_file({"w": torch.tensor([[1.0, float("nan")]]), "v": torch.zeros(2, 2, 2)},
              str(tmp_path / "n.safetensors"))
    with pytest.raises(LoralabError, match="1 NaN/Inf"):
        load_matrix(f"{tmp_path / 'n.safetensors'}:w")
    with pytest.raises(LoralabError, match=r"shape \(2, 2, 2\)"):
        load_matrix(f"{tmp_path / 'n.safetensors'}:v")


def test_paths_and_suffixes(tmp_path):
    np.save(tmp_path / "w.npy", np.ones((2, 2)))
    with pytest.raises(LoralabError, match="does not exist"):
        load_matrix(str(tmp_path / "missing.npy"))
    with pytest.raises(LoralabError, match="does not exist"):
        load_matrix(f"{tmp_path / 'missing.safetensors'}:key")
    with pytest.raises(LoralabError, match="is a folder"):
        load_matrix(str(tmp_path))
    (tmp_path / "w.txt").write_text("1 2\n3 4\n")
    with pytest.raises(LoralabError, match="only .npy and .safetensors"):
        load_matrix(str(tmp_path / "w.txt"))
    with pytest.raises(LoralabError, match="holds one array; drop ':k'"):
        load_matrix(f"{tmp_path / 'w.npy'}:k")
    with pytest.raises(LoralabError, match="empty"):
        load_matrix("")
    with pytest.raises(LoralabError, match="float32 or float64"):
        load_matrix(str(tmp_path / "w.npy"), dtype="float16")
