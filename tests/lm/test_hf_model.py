"""The user's transformers causal LM: tiny random GPT-2 and Llama saved to a temp folder with a
tokenizer trained on the spot, loaded offline; every bad input is one clear line."""

from __future__ import annotations

import sys

import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from loralab.errors import LoralabError  # noqa: E402
from loralab.lm.corpus import LMData  # noqa: E402
from loralab.lm.hf_model import HFCausalLM, hf_token_ids, load_causal_lm, module_names  # noqa: E402
from loralab.lm.model import TinyLM, TinyLMConfig  # noqa: E402

LINES = ["the quick brown fox jumps over the lazy dog", "a frozen weight and a low rank update",
         "学而时习之，不亦说乎", "lora trains two small matrices beside each linear layer"]
VOCAB = 300
EOS = "<|endoftext|>"


def make_tokenizer(eos: str | None = EOS):
    """A byte-level BPE trained on four lines (any UTF-8 text encodes), as a fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=[eos] if eos else [],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(LINES * 4, trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos)


def tiny_gpt2():
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_embd=32, n_layer=2, n_head=2, vocab_size=VOCAB, n_positions=64, bos_token_id=0,
        eos_token_id=0))


def tiny_llama():
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, vocab_size=VOCAB, max_position_embeddings=64, bos_token_id=0,
        eos_token_id=0))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """``{"gpt2": (folder, model), "llama": ...}``: each saved with its tokenizer."""
    torch.manual_seed(0)
    tok = make_tokenizer()
    out = {}
    for name, build in (("gpt2", tiny_gpt2), ("llama", tiny_llama)):
        folder = tmp_path_factory.mktemp(name)
        model = build().eval()
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        out[name] = (folder, model)
    return out


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_a_local_folder_loads_and_gives_the_models_logits(saved, arch, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")                 # a folder needs no network
    folder, reference = saved[arch]
    wrapper, tok = load_causal_lm(str(folder))
    assert isinstance(wrapper, HFCausalLM) and wrapper.vocab_size == VOCAB
    assert wrapper.block_size == 64 and not wrapper.training
    x = torch.randint(0, VOCAB, (2, 12))
    logits = wrapper(x)
    assert logits.shape == (2, 12, VOCAB) and logits.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(logits, reference(input_ids=x).logits, rtol=0, atol=1e-6)
    assert tok.eos_token == EOS
    with pytest.raises(LoralabError, match="sequence length 65"):
        wrapper(torch.zeros(1, 65, dtype=torch.long))


def test_module_names_per_architecture(saved):
    assert module_names(saved["gpt2"][1]) == ["c_attn", "c_proj", "c_fc"]
    assert module_names(saved["llama"][1]) == ["q_proj", "k_proj", "v_proj", "o_proj",
                                               "gate_proj", "up_proj", "down_proj"]
    assert module_names(HFCausalLM(saved["gpt2"][1]), include_head=True)[-1] == "lm_head"
    tiny = TinyLM(TinyLMConfig(d_model=16, n_layers=1, n_heads=2, block_size=8))
    assert module_names(tiny) == ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj",
                                  "down_proj"]


def test_token_ids_join_documents_with_eos_and_feed_lmdata(saved):
    tok = make_tokenizer()
    docs = ["the quick brown fox", "学而时习之"]
    ids = hf_token_ids(tok, docs)
    first = tok("the quick brown fox", add_special_tokens=False)["input_ids"]
    assert ids.dtype == torch.long and ids.ndim == 1
    assert ids[:len(first)].tolist() == first and int(ids[len(first)]) == tok.eos_token_id
    assert tok.decode(ids[len(first) + 1:].tolist()) == "学而时习之"
    no_eos = make_tokenizer(eos=None)
    newline = no_eos("\n", add_special_tokens=False)["input_ids"]
    assert hf_token_ids(no_eos, ["a", "b"]).tolist() == [*no_eos("a")["input_ids"], *newline,
                                                         *no_eos("b")["input_ids"]]
    stream = hf_token_ids(tok, LINES * 8)
    data = LMData(stream[:-40], stream[-40:], 16, LINES, LINES[:1])
    x, y = data.batch(0, 4, seed=0)
    logits = HFCausalLM(saved["gpt2"][1])(x)
    assert logits.shape == (4, 16, VOCAB) and torch.equal(x[:, 1:], y[:, :-1])


@pytest.mark.filterwarnings("ignore::FutureWarning")   # transformers, inside PEFT
def test_lora_on_wrapper_hf_saves_an_adapter_peft_loads(saved, tmp_path):
    """The documented way: inject into ``wrapper.hf``, save from ``wrapper.hf``."""
    peft = pytest.importorskip("peft")
    from loralab.lora import inject_lora, save_adapter

    folder, _ = saved["gpt2"]
    wrapper, _ = load_causal_lm(str(folder))
    inject_lora(wrapper.hf, {"r": 2, "lora_alpha": 4, "target_modules": ["c_attn"],
                              "fan_in_fan_out": True},
                generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for name, p in wrapper.named_parameters():
            if p.requires_grad:
                assert name.startswith("hf.") and ".c_attn." in name
                p.normal_(0, 0.1)
    save_adapter(wrapper.hf, tmp_path / "adapter")
    base = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    loaded = peft.PeftModel.from_pretrained(base, str(tmp_path / "adapter")).eval()
    x = torch.randint(0, VOCAB, (1, 10))
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=x).logits, wrapper.eval()(x), atol=1e-5,
                                   rtol=1e-5)


def _error(*args, **kwargs) -> str:
    with pytest.raises(LoralabError) as info:
        load_causal_lm(*args, **kwargs)
    return str(info.value)


def test_a_folder_without_config_or_tokenizer_is_named(tmp_path, saved):
    empty = tmp_path / "empty"
    empty.mkdir()
    msg = _error(str(empty))
    assert str(empty) in msg and "no config.json" in msg and "save_pretrained" in msg
    weights_only = tmp_path / "weights_only"
    saved["gpt2"][1].save_pretrained(weights_only)
    msg = _error(str(weights_only))
    assert str(weights_only) in msg and "no tokenizer" in msg
    config_only = tmp_path / "config_only"
    saved["gpt2"][1].config.save_pretrained(config_only)
    assert "no weights" in _error(str(config_only))
    assert "is a file" in _error(str(weights_only / "config.json"))


def test_a_model_that_is_not_a_causal_lm_is_refused(tmp_path):
    bert = transformers.BertForMaskedLM(transformers.BertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        vocab_size=VOCAB))
    bert.save_pretrained(tmp_path)
    make_tokenizer().save_pretrained(tmp_path)
    msg = _error(str(tmp_path))
    assert str(tmp_path) in msg and "'bert'" in msg and "BertForMaskedLM" in msg
    assert "not a causal LM" in msg and "AutoModelForCausalLM" in msg


def test_revision_with_a_local_folder_is_refused(saved):
    folder = saved["gpt2"][0]
    msg = _error(str(folder), revision="v1.0")
    assert "--revision v1.0" in msg and str(folder) in msg and "hub id" in msg


def test_a_hub_id_offline_is_not_found_locally_and_unreachable(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    msg = _error("loralab-tests/no-such-model")
    assert "loralab-tests/no-such-model" in msg and "not found locally" in msg
    assert "network is unreachable" in msg and "HF_HUB_OFFLINE=1" in msg


def test_a_hub_id_without_network_says_so_quickly(monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    asked = {}

    def no_network(repo_id, *, revision=None, timeout=None, **kw):
        asked["timeout"] = timeout
        raise ConnectionError("Name or service not known")

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "model_info", no_network)
    msg = _error("loralab-tests/no-such-model", revision="main")
    assert "not found locally" in msg and "network is unreachable" in msg
    assert 0 < asked["timeout"] <= 30


def test_a_name_that_is_neither_a_folder_nor_a_hub_id(tmp_path):
    msg = _error(str(tmp_path / "no" / "such" / "model"))
    assert "no such folder" in msg and "hub id" in msg


def test_missing_transformers_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    assert 'pip install "loralab[hf]"' in _error("gpt2")


def test_an_unreadable_config_or_a_too_large_tokenizer_is_named(tmp_path, saved):
    folder, model = saved["gpt2"]
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in folder.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "config.json").write_text('{"model_type": "florbnet"}', encoding="utf-8")
    msg = _error(str(broken))
    assert "config.json could not be read" in msg and "florbnet" in msg
    small = tmp_path / "small_vocab"
    transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_embd=16, n_layer=1, n_head=2, vocab_size=200, n_positions=16, bos_token_id=0,
        eos_token_id=0)).save_pretrained(small)
    make_tokenizer().save_pretrained(small)
    msg = _error(str(small))
    assert "300 tokens" in msg and "only 200" in msg


def test_dtype_and_a_4bit_base(saved):
    folder, reference = saved["llama"]
    x = torch.randint(0, VOCAB, (1, 8))
    bf16, _ = load_causal_lm(str(folder), dtype=torch.bfloat16)
    assert bf16.hf.dtype == torch.bfloat16 and bf16(x).dtype == torch.float32
    pytest.importorskip("bitsandbytes")
    nf4, _ = load_causal_lm(str(folder), quantize_4bit=True)
    assert "4bit" in type(nf4.hf.model.layers[0].self_attn.q_proj).__name__
    with torch.no_grad():
        ref = reference(input_ids=x).logits
        assert (nf4(x) - ref).abs().max() < 0.5 * ref.abs().max()


class _NoCache(torch.nn.Module):
    """The same model seen without ``decode_step``: generate runs the whole context per token."""

    def __init__(self, inner: HFCausalLM) -> None:
        super().__init__()
        self.inner, self.block_size = inner, inner.block_size

    def forward(self, idx):
        return self.inner(idx)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_cached_decoding_equals_the_whole_context_each_step(saved, arch):
    from loralab.lm.model import generate

    torch.manual_seed(0)
    wrapper = HFCausalLM(tiny_gpt2() if arch == "gpt2" else tiny_llama()).eval()
    ids = torch.tensor([[5, 17, 42, 8, 99]])
    logits, past = wrapper.decode_step(ids[:, :3])
    torch.testing.assert_close(logits, wrapper(ids[:, :3])[0, -1])
    for t in (3, 4):                                  # one new token at a time, against the cache
        logits, past = wrapper.decode_step(ids[:, t:t + 1], past)
        torch.testing.assert_close(logits, wrapper(ids[:, :t + 1])[0, -1], atol=1e-5, rtol=1e-5)
    tok = make_tokenizer()
    for temp in (0.0, 0.7):
        cached = generate(wrapper, tok, "lora trains", 20, temperature=temp, seed=3, stop=None)
        plain = generate(_NoCache(wrapper), tok, "lora trains", 20, temperature=temp, seed=3,
                         stop=None)
        assert cached == plain and len(tok.encode(cached)) >= 1


def test_cached_decoding_refuses_a_context_beyond_the_model(saved):
    wrapper = HFCausalLM(tiny_llama()).eval()
    with pytest.raises(LoralabError, match="sequence length 65 is not allowed"):
        wrapper.decode_step(torch.zeros(1, 65, dtype=torch.long))


def _broken_copy(saved, tmp_path, name: str):
    import shutil

    folder = tmp_path / name
    shutil.copytree(saved["llama"][0], folder)
    return folder


def test_a_config_with_a_string_where_a_number_belongs_is_one_line(saved, tmp_path):
    """It was a bare StrictDataclassFieldValidationError ('internal error')."""
    import json

    folder = _broken_copy(saved, tmp_path, "strcfg")
    config = json.loads((folder / "config.json").read_text())
    config["hidden_size"] = "32"
    (folder / "config.json").write_text(json.dumps(config))
    msg = _error(str(folder))
    assert "its config.json could not be read" in msg and "hidden_size" in msg
    assert "\n" not in msg


def test_a_truncated_weights_file_is_one_line(saved, tmp_path):
    folder = _broken_copy(saved, tmp_path, "trunc")
    blob = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(blob[: len(blob) // 2])
    msg = _error(str(folder))
    assert "its weights could not be loaded" in msg and "truncated or corrupt" in msg


def test_nan_weights_are_blamed_on_the_file_not_the_learning_rate(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = _broken_copy(saved, tmp_path, "nanw")
    tensors = load_file(folder / "model.safetensors")
    key = sorted(k for k in tensors if k.endswith("q_proj.weight"))[0]
    tensors[key][0, 0] = float("nan")
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    msg = _error(str(folder))
    assert f"its weight {key!r} holds 1 NaN/Inf values" in msg
    assert "learning rate can" in msg and "lower the learning rate" not in msg
