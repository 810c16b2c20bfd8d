"""Documented limits of common serving tools, and which of them an adapter runs into.

Each :class:`~loralab.results.check.ServerLimit` states a fact as its source states it, with
the source's URL; only facts found in the source are listed (checked when this was written:
vLLM's ``LoRAConfig`` and ``PEFTHelper`` API pages, llama.cpp's ``convert_lora_to_gguf``).
A tool's newer release may lift a limit: the URL is where to look. :func:`server_limits`
marks each one that applies to the adapter at hand; a limit is never a finding (it does not
change what the adapter computes on its base), it is what to know before serving it.
"""

from __future__ import annotations

from ..lora import AdapterConfig
from ..lora.keys import parse_lora_key
from ..results.check import ServerLimit

__all__ = ["VLLM_RANKS", "server_limits"]

VLLM_RANKS: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 320, 512)
_VLLM_CONFIG = "https://docs.vllm.ai/en/v0.14.0/api/vllm/config/lora/"
_VLLM_CONFIG_011 = "https://docs.vllm.ai/en/v0.11.0/api/vllm/config/lora.html"
_VLLM_PEFT = "https://docs.vllm.ai/en/latest/api/vllm/lora/peft_helper/"
_LLAMA_CPP = "https://github.com/ggml-org/llama.cpp/blob/master/convert_lora_to_gguf.py"


def _vllm(config: AdapterConfig, max_rank: int, vocab_differs: bool) -> list[ServerLimit]:
    need = next((r for r in VLLM_RANKS if r >= max_rank), None)
    rank_advice = (f"serve with --max-lora-rank {need}" if need else
                   f"rank {max_rank} is above vLLM's largest max_lora_rank, 512")
    return [
        ServerLimit("vLLM", "max_lora_rank defaults to 16; its allowed values are "
                    f"{', '.join(map(str, VLLM_RANKS))} (vLLM 0.14)", _VLLM_CONFIG,
                    max_rank > 16, rank_advice if max_rank > 16 else ""),
        ServerLimit("vLLM", 'modules_to_save must be None ("vLLM only supports modules_to_save '
                    'being None.")', _VLLM_PEFT, bool(config.saved_modules()),
                    "merge the adapter into the base and serve the merged model"),
        ServerLimit("vLLM", 'DoRA is refused ("vLLM does not yet support DoRA.")', _VLLM_PEFT,
                    config.use_dora, "merge the adapter into the base and serve the merged model"),
        ServerLimit("vLLM", 'the adapter\'s bias must be "none" (PEFTHelper.bias: '
                    'Literal["none"])', _VLLM_PEFT, config.bias != "none",
                    "retrain with bias='none', or merge"),
        ServerLimit("vLLM", "lora_extra_vocab_size (extra tokens an adapter may bring, default "
                    "256) is deprecated in 0.11 and removed from 0.12", _VLLM_CONFIG_011,
                    vocab_differs, "serve a base resized and saved with the new vocabulary"),
    ]


def _llama_cpp(config: AdapterConfig, keys: list[str]) -> list[ServerLimit]:
    other = [k for k in keys if parse_lora_key(k) is None or parse_lora_key(k)[1]  # type: ignore[index]
             not in ("A", "B")]
    return [
        ServerLimit("llama.cpp", "convert_lora_to_gguf.py converts lora_A/lora_B (and "
                    "lora_embedding_A/B) tensors only; any other tensor (a modules_to_save "
                    "copy such as lm_head.weight, a bias, DoRA's magnitude) stops it with "
                    "\"Not a lora_A or lora_B tensor\"", _LLAMA_CPP, bool(other),
                    f"first such key: {other[0]}" if other else ""),
        ServerLimit("llama.cpp", "convert_lora_to_gguf.py writes one lora_alpha for the file "
                    "(the config's lora_alpha): alpha_pattern is not carried over",
                    _LLAMA_CPP, bool(config.alpha_pattern),
                    "give every module the same alpha, or merge"),
    ]


def server_limits(config: AdapterConfig, keys: list[str], max_rank: int,
                  vocab_differs: bool) -> list[ServerLimit]:
    """The known limits of vLLM and llama.cpp, each marked whether it applies to an adapter
    with ``config``, tensor ``keys``, largest rank ``max_rank`` and (``vocab_differs``) a
    vocabulary other than its base's."""
    return _vllm(config, max_rank, vocab_differs) + _llama_cpp(config, keys)
