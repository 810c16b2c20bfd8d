"""``loralab check`` on a tiny random Llama (tied embeddings) saved with a tokenizer: a healthy
adapter exits 0; each broken kind exits 1 with its finding; bad input exits 2 and creates
nothing; the PEFT stage is PEFT's own ``PeftModel`` against loralab's loader (the oracle)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
pytest.importorskip("peft")
from safetensors.torch import load_file, save_file  # noqa: E402

from loralab.errors import LoralabError  # noqa: E402
from loralab.experiment.check import check_adapter  # noqa: E402
from loralab.lora import AdapterConfig, inject_lora, save_adapter  # noqa: E402
from loralab.lora.adapters import CONFIG_NAME, WEIGHTS_NAME  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

VOCAB = 300
P = "base_model.model.model.layers.0.self_attn."
LINES = ["the quick brown fox jumps over the lazy dog", "a frozen weight and a low rank update",
         "lora trains two small matrices beside each linear layer"]


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(LINES * 4, trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """``(folder, model)``: a 2-layer Llama whose lm_head is tied to embed_tokens."""
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, vocab_size=VOCAB, max_position_embeddings=64, bos_token_id=0,
        eos_token_id=0, tie_word_embeddings=True)).eval()
    folder = tmp_path_factory.mktemp("base")
    model.save_pretrained(folder)
    _tokenizer().save_pretrained(folder)
    return folder, model


def _adapter(model, folder: Path, **config) -> Path:
    """An adapter as training leaves it: B (and any saved copy) moved away from its init."""
    m = copy.deepcopy(model)
    kw = dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]) | config
    inject_lora(m, AdapterConfig(**kw))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in m.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
    save_adapter(m, folder)
    return folder


def _edit(src: Path, dest: Path, change) -> Path:
    shutil.copytree(src, dest)
    tensors = load_file(dest / WEIGHTS_NAME)
    change(tensors)
    save_file(tensors, dest / WEIGHTS_NAME)
    return dest


@pytest.fixture(scope="module")
def healthy(base, tmp_path_factory):
    return _adapter(base[1], tmp_path_factory.mktemp("a") / "healthy")


def _kinds(report) -> set[str]:
    return {f.kind for f in report.findings}


def test_a_healthy_adapter_holds_at_every_stage_and_exits_0(base, healthy, run_cli, tmp_path,
                                                            capsys):
    out = tmp_path / "check.json"
    assert run_cli(["check", str(healthy), "--model", str(base[0]), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["ok"] and data["findings"] == []
    assert data["key_counts"] == {"used": 8, "unused": 0, "missing": 0}
    stages = {s["stage"]: s for s in data["stages"]}
    assert set(stages) == {"loaded", "merged", "unloaded", "saved-reloaded", "4bit-merged",
                           "peft"}
    assert stages["loaded"]["max_abs_diff"] > 1e-3          # the adapter does something
    assert all(s["holds"] for s in data["stages"])
    assert [m["scale"] for m in data["modules"]] == [2.0] * 4 and data["layers"] == [0, 1]
    assert data["base_tied"] and data["ties_kept"] and data["init_converted"]
    assert "findings: none" in capsys.readouterr().out


def test_peft_is_the_oracle_of_the_loaded_logits(base, healthy):
    """PEFT's PeftModel on the same folder gives loralab's logits (float32 rounding)."""
    from peft import PeftModel

    from loralab.lora import load_adapter

    ids = torch.tensor([[5, 17, 42, 99, 3, 250]])
    ours = copy.deepcopy(base[1])
    load_adapter(ours, healthy)
    theirs = PeftModel.from_pretrained(copy.deepcopy(base[1]), str(healthy)).eval()
    with torch.no_grad():
        a, b = ours(input_ids=ids).logits, theirs(input_ids=ids).logits
        assert (a - base[1](input_ids=ids).logits).abs().max() > 1e-3
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    peft_row = next(s for s in check_adapter(healthy, str(base[0])).stages if s.stage == "peft")
    assert peft_row.holds and peft_row.max_abs_diff <= 1e-5


def _nan(t):
    t[P + "q_proj.lora_B.weight"][0, 0] = float("nan")


def _extra(t):
    t[P + "o_proj.lora_A.weight"] = torch.zeros(4, 32)


def _drop(t):
    del t[P + "v_proj.lora_B.weight"]


@pytest.mark.parametrize(("change", "kind", "words"), [
    (_nan, "non-finite", "NaN/Inf"),
    (_extra, "unused-key", "o_proj.lora_A.weight"),
    (_drop, "missing-key", "v_proj.lora_B.weight"),
])
def test_a_broken_file_exits_1_with_its_finding(base, healthy, tmp_path, run_cli, change, kind,
                                                words):
    bad = _edit(healthy, tmp_path / "bad", change)
    out = tmp_path / "r.json"
    assert run_cli(["check", str(bad), "--model", str(base[0]), "--json", str(out)]) == 1
    data = json.loads(out.read_text())
    found = [f for f in data["findings"] if f["kind"] == kind]
    assert found and words in found[0]["message"] and not data["stages"]


def test_another_vocabulary_names_the_resize(base, tmp_path):
    folder = _adapter(base[1], tmp_path / "v", modules_to_save=["embed_tokens"])

    def grow(t):
        key = "base_model.model.model.embed_tokens.weight"
        t[key] = torch.cat([t[key], torch.zeros(8, 32)])

    bad = _edit(folder, tmp_path / "bad", grow)
    report = check_adapter(bad, str(base[0]))
    vocab = next(f for f in report.findings if f.kind == "vocab-size")
    assert "resize_token_embeddings(308)" in vocab.message and "300" in vocab.message
    assert "unused-key" not in _kinds(report)     # the shape is explained by the vocabulary
    assert report.saved_embeddings == {"base_model.model.model.embed_tokens.weight": 308}


def test_an_unconverted_pissa_adapter_is_a_finding_with_its_size(base, tmp_path):
    folder = _adapter(base[1], tmp_path / "p", init_lora_weights="pissa")
    report = check_adapter(folder, str(base[0]))
    assert _kinds(report) == {"unconverted-init"} and not report.init_converted
    stages = {s.stage: s for s in report.stages}
    assert stages["plain-lora"].max_abs_diff > 100 * stages["plain-lora"].tolerance
    assert stages["merged"].holds and stages["peft"].holds     # PEFT splits the base too
    assert "path_initial_model_for_weight_conversion" in report.findings[0].message


def test_a_saved_lm_head_breaks_the_tie_and_the_reload_shows_it(base, tmp_path):
    folder = _adapter(base[1], tmp_path / "t", modules_to_save=["lm_head"])
    report = check_adapter(folder, str(base[0]))
    assert "ties-broken" in _kinds(report) and not report.ties_kept
    reload = next(s for s in report.stages if s.stage == "saved-reloaded")
    assert reload.holds                  # transformers 5 keeps both weights (and warns)
    tied = next(s for s in report.stages if s.stage == "tied-reload")
    assert not tied.holds                # a loader honouring the tie uses one weight for both
    assert any(s.applies and s.server == "vLLM" and "modules_to_save" in s.fact
               for s in report.limits)             # vLLM refuses a saved module


def _bad_inputs(healthy: Path, root: Path) -> dict[str, tuple[Path, str]]:
    nocfg = root / "nocfg"
    shutil.copytree(healthy, nocfg)
    (nocfg / CONFIG_NAME).unlink()
    noweights = root / "noweights"
    shutil.copytree(healthy, noweights)
    (noweights / WEIGHTS_NAME).unlink()
    cut = root / "cut"
    shutil.copytree(healthy, cut)
    blob = (cut / WEIGHTS_NAME).read_bytes()
    (cut / WEIGHTS_NAME).write_bytes(blob[: len(blob) // 2])
    types = root / "types"
    shutil.copytree(healthy, types)
    cfg = json.loads((types / CONFIG_NAME).read_text())
    (types / CONFIG_NAME).write_text(json.dumps(cfg | {"r": "four"}))
    return {"missing": (root / "nope", "does not exist"), "no config": (nocfg, CONFIG_NAME),
            "no weights": (noweights, WEIGHTS_NAME), "truncated": (cut, "safetensors"),
            "wrong types": (types, "r='four'")}


def test_bad_input_exits_2_with_one_line_and_creates_nothing(base, healthy, tmp_path, run_cli,
                                                             capsys):
    work = tmp_path / "work"
    work.mkdir()
    for name, (folder, words) in _bad_inputs(healthy, tmp_path).items():
        out = work / "r.json"
        assert run_cli(["check", str(folder), "--model", str(base[0]), "--json", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and words in err and "Traceback" not in err, name
        assert list(work.iterdir()) == [], name


def test_a_base_that_does_not_match_at_all_is_bad_input(base, healthy, tmp_path, run_cli,
                                                        capsys):
    gpt2 = tmp_path / "gpt2"
    transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_embd=32, n_layer=2, n_head=2, vocab_size=VOCAB, n_positions=64)).save_pretrained(gpt2)
    _tokenizer().save_pretrained(gpt2)
    assert run_cli(["check", str(healthy), "--model", str(gpt2)]) == 2
    assert "does not match the adapter" in capsys.readouterr().err
    renamed = _edit(healthy, tmp_path / "renamed", lambda t: [
        t.__setitem__(k.replace("self_attn", "attn"), t.pop(k)) for k in list(t)])
    with pytest.raises(LoralabError, match=r"at all.*first.*attn\.q_proj.*no module"):
        check_adapter(renamed, str(base[0]))
