"""The experiment on the user's text (``--data``) and model (``--model``), offline: tiny
random-init GPT-2 and Llama saved with a tokenizer trained on the spot, a text written here.
PEFT is the oracle for the adapters."""

from __future__ import annotations

import json
import random
import signal
from pathlib import Path

import pytest
import torch

from loralab.experiment import ExperimentConfig, RunOptions, run_experiment
from loralab.lm.textdata import load_text

transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

WORDS = ("the a cat dog sees runs small big red blue house park river quickly slowly low rank "
         "update frozen weight 学 而 时 习").split()


def _text(path: Path, n: int = 1200) -> Path:
    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10))) + "."
             for _ in range(n)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _tokenizer(lines: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(lines, trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok,
                                                eos_token="<|endoftext|>")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """``{"text": path, "gpt2": folder, "llama": folder, "cache": folder}``."""
    root = tmp_path_factory.mktemp("user")
    text = _text(root / "text.txt")
    tok = _tokenizer(text.read_text(encoding="utf-8").splitlines())
    torch.manual_seed(0)
    models = {
        "gpt2": transformers.GPT2LMHeadModel(transformers.GPT2Config(
            n_embd=32, n_layer=2, n_head=2, vocab_size=300, n_positions=64, bos_token_id=0,
            eos_token_id=0)),
        "llama": transformers.LlamaForCausalLM(transformers.LlamaConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=64, vocab_size=300, max_position_embeddings=64, bos_token_id=0,
            eos_token_id=0))}
    out = {"text": text, "cache": root / "cache"}
    for name, model in models.items():
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
        out[name] = root / name
    return out


def _config(world, cache_dir: str | None = None, **kw) -> tuple[ExperimentConfig, RunOptions]:
    """What to run (``kw`` over the defaults here) and how: on the CPU, the world's cache."""
    base = dict(preset="quick", methods=("full", "lora"), ranks=(2,), steps=30,
                data=str(world["text"]))
    return (ExperimentConfig(**{**base, **kw}),
            RunOptions(device="cpu", cache_dir=cache_dir or str(world["cache"])))


@pytest.mark.parametrize("arch, targets", [("gpt2", "c_attn"), ("llama", "q_proj+v_proj")])
def test_a_transformers_model_fine_tunes_and_its_adapter_loads_in_peft(world, arch, targets,
                                                                        tmp_path) -> None:
    peft = pytest.importorskip("peft")
    result = run_experiment(*_config(world, model=str(world[arch]), targets=(targets,)),
                            out_dir=tmp_path / "out")
    full, lora = result.run("full"), result.run(f"lora-r2-{targets}")
    assert full.final_val_loss < result.base_val_loss
    assert lora.final_val_loss < result.base_val_loss
    assert result.base.pretrain_val_loss is None and "tokens" in result.data["summary"]
    data = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["method"] for r in data["runs"]] == ["full", "lora"]
    folder = tmp_path / "out" / "adapters" / lora.label
    base = transformers.AutoModelForCausalLM.from_pretrained(world[arch]).eval()
    x = torch.randint(0, 300, (2, 16))
    with torch.no_grad():
        plain = base(x).logits
        theirs = peft.PeftModel.from_pretrained(base, folder).eval()(x).logits
    assert float((theirs - plain).abs().max()) > 1e-4          # the adapter changes them
    # loralab's own load of the same folder gives PEFT's logits
    from loralab.lm.hf_model import load_causal_lm
    from loralab.lora import load_adapter

    wrapper, _ = load_causal_lm(str(world[arch]))
    load_adapter(wrapper.hf, folder)
    with torch.no_grad():
        torch.testing.assert_close(wrapper.eval()(x), theirs, atol=1e-5, rtol=1e-5)


def test_user_text_with_the_tiny_lm_uses_bytes_and_never_trains_on_validation(world,
                                                                               tmp_path):
    config, options = _config(world, targets=("attn",))
    result = run_experiment(config, options, out_dir=tmp_path / "o")
    assert result.config.spec.model.vocab_size == 256
    for run in result.runs:
        assert run.final_val_loss < run.initial_val_loss, run.label
    corpus = load_text(world["text"], seed=config.seed)
    assert not set(corpus.val_docs) & set(corpus.train_docs)
    assert result.data["sha256"] == corpus.sha256
    samples = (tmp_path / "o" / "samples.txt").read_text(encoding="utf-8")
    assert "prompt:" in samples and "Pig Latin" not in samples


def test_ctrl_c_then_rerun_resumes_a_model_run(world, tmp_path) -> None:
    config, options = _config(world, model=str(world["gpt2"]), targets=("c_attn",),
                              methods=("lora",))
    ref = run_experiment(config, options).run("lora-r2-c_attn")
    seen = {"n": 0}

    def progress(label: str, steps: int) -> None:
        seen["n"] += steps
        if seen["n"] == 12:
            signal.raise_signal(signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        run_experiment(config, options, out_dir=tmp_path, progress=progress)
    again = run_experiment(config, options, out_dir=tmp_path).run("lora-r2-c_attn")
    assert again.resumed_from == 13
    assert again.val_loss == pytest.approx(ref.val_loss, abs=1e-6)


@pytest.mark.parametrize("args, words", [
    (["--data", "/nonexistent/text.txt"], ["/nonexistent/text.txt"]),
    (["--data", "builtin:nope"], ["nope", "shakespeare", "lunyu"]),
    (["--revision", "v1"], ["revision", "--model"]),
    (["--model", "MODEL", "--targets", "q_proj"], ["q_proj", "c_attn"]),
    (["--model", "EMPTY"], ["config.json"]),
    (["--methods", "full,lorra"], ["lorra", "dora"]),
])
def test_cli_bad_input_is_one_line_and_exit_2(world, run_cli, tmp_path, capsys, args,
                                              words) -> None:
    (tmp_path / "empty").mkdir()
    args = [str(world["gpt2"]) if a == "MODEL" else str(tmp_path / "empty") if a == "EMPTY"
            else a for a in args]
    code = run_cli(["finetune", "--preset", "quick", "--cache", str(world["cache"]),
                    "--out", str(tmp_path / "o"), "--no-progress", *args])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert all(w in err for w in words), err
    assert not (tmp_path / "o").exists()


def test_tokenised_text_is_cached_by_content(world, tmp_path) -> None:
    from loralab.experiment import RunContext
    from loralab.experiment.workload import load_workload

    config, options = _config(world, model=str(world["llama"]), targets=("q_proj",),
                              cache_dir=str(tmp_path / "c"))
    ctx = RunContext(options=options, device=torch.device("cpu"))
    first = load_workload(config, ctx)
    again = load_workload(config, ctx)
    assert not first.data_info["tokens_cached"] and again.data_info["tokens_cached"]
    assert torch.equal(first.ft.train, again.ft.train) and torch.equal(first.ft.val,
                                                                       again.ft.val)
    other = _text(tmp_path / "other.txt", n=600)
    third = load_workload(config.with_changes(data=str(other)), ctx)
    assert not third.data_info["tokens_cached"]


def test_qlora_and_loftq_on_a_transformers_llama(world, tmp_path) -> None:
    pytest.importorskip("bitsandbytes")
    config, options = _config(world, model=str(world["llama"]), targets=("q_proj+v_proj",),
                              methods=("lora", "qlora", "loftq"), steps=10)
    result = run_experiment(config, options, out_dir=tmp_path / "o")
    lora = result.run("lora-r2-q_proj+v_proj")
    for label in ("qlora-r2-q_proj+v_proj", "loftq-r2-q_proj+v_proj"):
        run = result.run(label)
        assert run.base_weight_bytes < lora.base_weight_bytes, label
        assert run.final_val_loss < run.initial_val_loss, label
    gpt2 = _config(world, model=str(world["gpt2"]), targets=("c_attn",), methods=("qlora",))
    from loralab.errors import LoralabError

    with pytest.raises(LoralabError, match="Conv1D"):
        run_experiment(*gpt2, out_dir=tmp_path / "g")
    assert not (tmp_path / "g").exists()
