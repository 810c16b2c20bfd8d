"""The report's table of loralab functions beyond the seed's three, in English and Chinese.

Each entry names a real object; a test checks that every one of them exists.
"""

from __future__ import annotations

__all__ = ["API", "api_rows"]

# (module, name, English, Chinese)
API: tuple[tuple[str, str, str, str], ...] = (
    ("lowrank", "svd_sweep", "Eckart–Young error of every rank from one SVD, beside the "
     "seed's random BA", "一次 SVD 得到每个秩的 Eckart–Young 误差，并与种子的随机 BA 对比"),
    ("lowrank", "spectrum", "singular values, cumulative energy and the ranks for "
     "50/90/99 % of it", "奇异值、累计能量，以及达到 50/90/99% 能量所需的秩"),
    ("lowrank", "fit_lowrank", "learns B, A by Adam (B = 0 at start) and compares with the "
     "optimum", "用 Adam 学习 B、A（B 初始为 0），并与最优解比较"),
    ("lowrank", "subspace_similarity", "the LoRA paper's φ between two fits' subspaces",
     "LoRA 论文中两次拟合子空间之间的相似度 φ"),
    ("lora", "LoRALinear", "wraps an nn.Linear: y = x W₀ᵀ + (α/r)·(x Aᵀ) Bᵀ, W₀ frozen",
     "包装 nn.Linear：y = x W₀ᵀ + (α/r)·(x Aᵀ) Bᵀ，W₀ 冻结"),
    ("lora", "inject_lora", "replaces the named Linear layers (q/k/v/o, MLP) by LoRALinear",
     "把指定名字的 Linear 层（q/k/v/o、MLP）替换为 LoRALinear"),
    ("lora", "merge_lora", "W = W₀ + (α/r)·BA in place, so inference costs nothing extra",
     "就地合并 W = W₀ + (α/r)·BA，推理不增加开销"),
    ("lora", "save_adapter", "writes adapter_config.json + adapter_model.safetensors "
     "(PEFT's format)", "保存 adapter_config.json + adapter_model.safetensors（PEFT 格式）"),
    ("lm", "TinyLM", "a tiny GPT-style causal LM with q/k/v/o and up/down projections",
     "小型 GPT 式因果语言模型，含 q/k/v/o 与 up/down 投影"),
    ("experiment", "run_experiment", "pretrains once, then full fine-tuning against LoRA at "
     "several ranks", "预训练一次，然后在多个秩上对比全参微调与 LoRA"),
)


def api_rows(lang: str) -> list[tuple[str, str]]:
    """``(qualified name, description)`` for each entry of :data:`API`."""
    return [(f"loralab.{mod}.{name}", zh if lang == "zh" else en) for mod, name, en, zh in API]
