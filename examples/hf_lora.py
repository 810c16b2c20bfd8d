"""LoRA on a transformers model with loralab, checked against PEFT, end to end.

    python examples/hf_lora.py MODEL_DIR [OUT_DIR]

MODEL_DIR is a local transformers causal LM with its tokenizer (``save_pretrained`` output);
with no argument a tiny random GPT-2 and a tokenizer trained on the spot are written to a
temp folder first, so the example runs offline. Steps: load the model, put LoRA on its
attention (GPT-2: ``c_attn``, a Conv1D), train a few steps with a plain torch loop, save the
adapter, load that adapter with PEFT and compare, merge, generate.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch


def tiny_gpt2(folder: Path) -> Path:
    """A 2-layer GPT-2 with random weights and a 200-token BPE tokenizer, saved to folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    text = ["the cat sat on the mat", "a dog ran in the park", "the bird sang all day"] * 20
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(text, trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<unk>",
                                   pad_token="<unk>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(fast), n_embd=64, n_layer=2, n_head=4,
                                       n_positions=64, bos_token_id=0, eos_token_id=0))
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def main(model_dir: Path, out: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from loralab.lora import AdapterConfig, inject_lora, save_adapter, unload_lora

    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.pad_token = tok.pad_token or tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    gpt2 = model.config.model_type == "gpt2"              # GPT-2 stores W as (d_in, d_out)
    targets = ["c_attn"] if gpt2 else ["q_proj", "v_proj"]
    inject_lora(model, AdapterConfig(r=8, lora_alpha=16, target_modules=targets,
                                     fan_in_fan_out=gpt2))
    batch = tok(["the cat sat on the mat", "a dog ran in the park"], return_tensors="pt",
                padding=True)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for step in range(5):                                   # a plain torch loop
        loss = model(**batch, labels=batch["input_ids"]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        print(f"step {step}: loss {loss.item():.3f}")
    model.eval()
    save_adapter(model, out)                                # PEFT's files
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir),
                                           out).eval()
    with torch.no_grad():
        diff = (model(**batch).logits - peft_model(**batch).logits).abs().max().item()
    print(f"PEFT loads the adapter: max |Δlogits| = {diff:.1e}")
    merged = unload_lora(model)                             # W0 + (α/r)·B A, plain layers
    prompt = tok("the cat", return_tensors="pt")
    ids = merged.generate(**prompt, max_new_tokens=6, do_sample=False,
                          pad_token_id=tok.eos_token_id)
    print("generated:", tok.decode(ids[0]))


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        given = Path(sys.argv[1]) if len(sys.argv) > 1 else tiny_gpt2(Path(tmp) / "gpt2")
        main(given, Path(sys.argv[2]) if len(sys.argv) > 2 else Path(tmp) / "adapter")
