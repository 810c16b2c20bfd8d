"""A training run's memory before it starts: weights, gradients, optimizer state, activations.

The four parts of one run of loralab's loop (AdamW, no gradient checkpointing), as it reports
its CPU peak; docs/model.md derives them and gives the measured error::

    weights      Σ numel·element_size; a 4-bit base's linear weights (not the head) at bits/8
                 bytes each (NF4: 4 bits + a float32 absmax per 64 weights = 4.5 bits)
    gradients    Σ numel·element_size of the trainable parameters (float32: 4 per weight)
    optimizer    AdamW: 2 × the gradient bytes (exp_avg, exp_avg_sq) + a 4-byte step a tensor
    activations  B·T·[L·(c_d·d + c_ff·d_ff + c_att·h·T) + V + c_head·d] float32 units

``(c_d, c_ff, c_head)`` per family of blocks (:data:`FAMILIES`, fitted within 1 % to what
``saved_tensors_hooks`` counts); ``c_att`` 0 for a fused attention kernel, 1 eager, 3 with
attention dropout on the math path (CPU). An adapter run drops what only frozen weights'
gradients need (:func:`_activation_bytes`); bf16 autocast: 0.7 × the float32 bytes + a bf16
copy of every float32 linear weight. Measured: within 10 % (full, LoRA; TinyLM, GPT-2,
Llama), 25 % under bf16; the allocator's transient buffers are not in it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import LoralabError
from ..memory_info import USABLE, available_memory, format_bytes
from ..method_specs import method_spec
from .cost import count_saved_tensors
from .hf_model import HFCausalLM, hf_shape_fields, is_linear_like
from .model import TinyLMConfig, lm_loss

__all__ = ["FAMILIES", "NF4_BITS", "Family", "MemoryEstimate", "ModelShape", "check_fits",
           "runs_that_fit",
           "estimate_from_config", "estimate_run_memory", "lora_param_count",
           "measure_activations"]

NF4_BITS = 4.5
BF16_ACTIVATION_RATIO = 0.7          # measured 0.57-0.71 of the float32 bytes


@dataclass(frozen=True)
class Family:
    """Activation constants of one kind of block (float32 units per token, module doc)."""

    per_d: float
    per_ff: float
    head_d: float
    norm_weight_d: float = 0.0       # d-sized copies kept only for the norms' weights


FAMILIES = {"tinylm": Family(8, 2, 2), "gpt2": Family(10, 5, 2), "llama": Family(10, 4, 3, 2),
            "generic": Family(10, 5, 3)}
_GROUPS = {"attn_in": {"q_proj", "k_proj", "v_proj", "c_attn", "query_key_value", "qkv_proj"},
           "attn_out": {"o_proj", "c_proj", "out_proj", "dense"},
           "mlp_in": {"up_proj", "gate_proj", "c_fc", "fc1", "fc_in", "dense_h_to_4h"},
           "mlp_out": {"down_proj", "c_proj", "fc2", "fc_out", "dense_4h_to_h"}}


def _positive(name: str, v: object) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise LoralabError(f"{name}={v!r} is not allowed; it must be an integer >= 1")


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs of a decoder: ``d_model``, ``n_layers``, ``n_heads``,
    ``vocab_size``, ``d_ff`` (0: 4·d), ``n_kv_heads`` (0: n_heads), ``family`` (a key of
    :data:`FAMILIES`), ``positions`` (learned position rows), ``tied_head``, ``gated``
    (gate_proj), ``attn_dropout``, ``eager_attention``."""

    d_model: int
    n_layers: int
    n_heads: int
    vocab_size: int
    d_ff: int = 0
    n_kv_heads: int = 0
    family: str = "generic"
    positions: int = 0
    tied_head: bool = True
    gated: bool = False
    attn_dropout: float = 0.0
    eager_attention: bool = False

    def __post_init__(self) -> None:
        for name in ("d_model", "n_layers", "n_heads", "vocab_size"):
            _positive(name, getattr(self, name))
        if self.family not in FAMILIES:
            raise LoralabError(f"family={self.family!r} is not allowed; use one of "
                               f"{', '.join(FAMILIES)}")

    @property
    def ffn(self) -> int:
        return self.d_ff or 4 * self.d_model

    @classmethod
    def from_config(cls, config: object) -> ModelShape:
        """From TinyLM's config or a transformers config (its text part)."""
        if isinstance(config, TinyLMConfig):
            return cls(config.d_model, config.n_layers, config.n_heads, config.vocab_size,
                       config.d_ff, family="tinylm", positions=config.block_size,
                       tied_head=False)
        return cls(**hf_shape_fields(config))

    @classmethod
    def of(cls, model: nn.Module) -> ModelShape:
        """The shape of TinyLM, :class:`~loralab.lm.hf_model.HFCausalLM` or a transformers
        model."""
        inner = model.hf if isinstance(model, HFCausalLM) else model
        config = getattr(inner, "config", None)
        if config is None or not (isinstance(config, TinyLMConfig)
                                  or hasattr(config, "model_type")):
            raise LoralabError(f"the shape of a {type(model).__name__} is not known; pass "
                               "shape=ModelShape(d_model=..., n_layers=..., n_heads=..., "
                               "vocab_size=...)")
        return cls.from_config(config)

    def linears(self) -> dict[str, list[tuple[int, int]]]:
        """``short name -> [(d_in, d_out), ...]`` of one block's linear layers."""
        d, ff = self.d_model, self.ffn
        if self.family == "gpt2":
            return {"c_attn": [(d, 3 * d)], "c_proj": [(d, d), (ff, d)], "c_fc": [(d, ff)]}
        kv = (self.n_kv_heads or self.n_heads) * (d // self.n_heads)
        out = {"q_proj": [(d, d)], "k_proj": [(d, kv)], "v_proj": [(d, kv)],
               "o_proj": [(d, d)], "up_proj": [(d, ff)], "down_proj": [(ff, d)]}
        if self.gated:
            out["gate_proj"] = [(d, ff)]
        return out

    def linear_count(self) -> int:
        """Weights of the blocks' linear layers (what a 4-bit base quantizes)."""
        return self.n_layers * sum(i * o for v in self.linears().values() for i, o in v)

    def parameter_count(self) -> int:
        """Analytic: embeddings, blocks (linears, GPT-2's biases, 2 norms), final norm, head."""
        d, v = self.d_model, self.vocab_size
        biases = sum(o for x in self.linears().values() for _, o in x) \
            if self.family == "gpt2" else 0
        norm = d if self.family == "llama" else 2 * d          # RMSNorm or LayerNorm
        per_block = biases + 2 * norm
        head = 0 if self.tied_head else v * d
        return v * d + self.positions * d + self.linear_count() + self.n_layers * per_block \
            + norm + head


def lora_param_count(model: nn.Module | ModelShape, targets: Sequence[str], rank: int
                     ) -> tuple[int, int]:
    """``(parameters, tensors)`` LoRA at ``rank`` adds on the linear layers whose short name
    is in ``targets``: ``r·(d_in + d_out)`` and 2 tensors (A, B) each."""
    targets = set(targets)
    if isinstance(model, ModelShape):
        table = model.linears()
        unknown = targets - set(table) - {"lm_head"}
        if unknown:
            raise LoralabError(f"targets {sorted(unknown)} are not modules of a {model.family}"
                               f" block; it has {', '.join(table)}")
        pairs = [p for t in targets & set(table) for p in table[t]] * model.n_layers
        if "lm_head" in targets:
            pairs.append((model.d_model, model.vocab_size))
    else:
        pairs = [tuple(m.weight.shape) for n, m in model.named_modules()   # Conv1D: (in, out)
                 if n and is_linear_like(m) and n.rsplit(".", 1)[-1] in targets]
    return sum(rank * (i + o) for i, o in pairs), 2 * len(pairs)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of one run by part; activations grow linearly with ``batch_size``, the rest not."""

    label: str
    method: str
    weights: int
    gradients: int
    optimizer_state: int
    activations: int
    trainable_params: int
    total_params: int
    batch_size: int
    seq_len: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer_state + self.activations

    def largest_batch(self, budget: float) -> int:
        """The largest batch whose total fits in ``budget`` bytes (0: not even one)."""
        fixed = self.total - self.activations
        per_seq = max(self.activations / self.batch_size, 1.0)
        return 0 if fixed >= budget else int((budget - fixed) // per_seq)

    def describe(self) -> str:
        """``LoRA r=8: 3.1 GiB (weights …, grads …, optimizer …, activations … at B × T)``."""
        return (f"{self.label}: {format_bytes(self.total)} (weights "
                f"{format_bytes(self.weights)}, grads {format_bytes(self.gradients)}, "
                f"optimizer {format_bytes(self.optimizer_state)}, activations "
                f"{format_bytes(self.activations)} at {self.batch_size} × {self.seq_len} "
                "tokens)")


def _activation_bytes(shape: ModelShape, b: int, t: int, *, adapter: bool,
                      targets: Sequence[str], rank: int, bf16: bool, device: str,
                      linear_weights: int) -> int:
    """The module doc's activation formula, in bytes."""
    fam, d, ff = FAMILIES[shape.family], shape.d_model, shape.ffn
    per_layer = fam.per_d * d + fam.per_ff * ff
    if shape.eager_attention or (shape.attn_dropout > 0 and not device.startswith("cuda")):
        per_layer += (3.0 if shape.attn_dropout > 0 else 1.0) * shape.n_heads * t
    head = shape.vocab_size + fam.head_d * d
    groups = {g for g, names in _GROUPS.items() if names & set(targets)}
    known = bool(targets) and all(x == "lm_head" or any(x in n for n in _GROUPS.values())
                                  for x in targets)
    if adapter and known:                      # unknown or no targets: nothing dropped
        dropped = {"attn_in": d, "attn_out": d, "mlp_in": d, "mlp_out": ff}
        per_layer -= sum(v for g, v in dropped.items() if g not in groups)
        per_layer -= fam.norm_weight_d * d
        head -= 0 if "lm_head" in targets else d
    per_layer += rank * len(targets) if adapter else 0
    fp32 = 4.0 * b * t * (shape.n_layers * per_layer + head)
    return int(BF16_ACTIVATION_RATIO * fp32 + 2 * linear_weights) if bf16 else int(fp32)


def _states(optimizer: str, grad_bytes: int, tensors: int) -> int:
    if optimizer not in ("adamw", "sgd"):
        raise LoralabError(f"optimizer={optimizer!r} is not allowed; use 'adamw' or 'sgd'")
    return 2 * grad_bytes + 4 * tensors if optimizer == "adamw" else 0


def _check_run(batch_size: int, seq_len: int, bits: float | None) -> None:
    _positive("batch_size", batch_size)
    _positive("seq_len", seq_len)
    if bits is not None and not 1 <= bits <= 16:
        raise LoralabError(f"quantized_base_bits={bits!r} is not allowed; use e.g. "
                           f"{NF4_BITS} (NF4) or 8")


Trainable = set[str] | Callable[[str], bool] | int | None


def _trainable(model: nn.Module, trainable: Trainable, method: str, rank: int
               ) -> tuple[int, int, int]:
    """``(params, bytes, tensors)`` of the model's own parameters that train."""
    named = list(model.named_parameters())
    if isinstance(trainable, int) and not isinstance(trainable, bool):
        return trainable, 4 * trainable, 0
    if trainable is None:
        adapter = method_spec(method).is_adapter
        fresh = adapter and rank > 0                   # factors not in the model yet
        chosen = [] if fresh else [p for _, p in named if p.requires_grad or not adapter]
    elif callable(trainable):
        chosen = [p for n, p in named if trainable(n)]
    else:
        unknown = sorted(set(trainable) - {n for n, _ in named})
        if unknown:
            raise LoralabError(f"trainable names {unknown[:3]} are not parameters of the model")
        chosen = [p for n, p in named if n in trainable]
    return (sum(p.numel() for p in chosen),
            sum(p.numel() * p.element_size() for p in chosen), len(chosen))


def _weight_bytes(model: nn.Module, bits: float | None) -> tuple[int, int]:
    """``(bytes of parameters and buffers, elements of the float32 linear weights autocast
    copies)``; with ``bits`` the linear weights but the head's count ``bits/8`` bytes each
    (and are not copied: a 4-bit layer dequantizes as it goes)."""
    inner = model.hf if isinstance(model, HFCausalLM) else model
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    linears = [(n, m) for n, m in model.named_modules() if n and is_linear_like(m)]
    quantized = {id(m.weight) for n, m in linears if m is not head and not n.endswith("lm_head")}
    total = sum(p.numel() * (bits / 8 if bits is not None and id(p) in quantized
                             else p.element_size()) for p in model.parameters())
    total += sum(b.numel() * b.element_size() for b in model.buffers())
    cast = sum(m.weight.numel() for _, m in linears if m.weight.dtype == torch.float32
               and (bits is None or id(m.weight) not in quantized))
    return int(math.ceil(total)), cast


def estimate_run_memory(model: nn.Module, *, method: str, batch_size: int, seq_len: int,
                        trainable: Trainable = None, targets: Sequence[str] = (),
                        lora_rank: int = 0, lora_params: int = 0, optimizer: str = "adamw",
                        quantized_base_bits: float | None = None, bf16: bool = False,
                        device: str = "cpu", shape: ModelShape | None = None
                        ) -> MemoryEstimate:
    """The memory of training ``model`` (module doc): weights and trainable parameters counted
    from its tensors (a ``meta``-device model costs nothing to build), activations from
    ``shape`` (default :meth:`ModelShape.of` the model).

    ``method``: ``"full"`` or an adapter method (``"lora"``, ...: a name of
    :data:`~loralab.method_specs.METHOD_SPECS`; base frozen). ``trainable``:
    the model's parameters that train, as names, a predicate on the name, a count (float32)
    or ``None``: all for ``full``; for an adapter those with ``requires_grad`` (the adapter is
    in the model), or none when ``lora_rank > 0``: then the factors are not in the model yet
    and are counted from ``targets`` (short module names) at ``lora_rank`` (float32, A and B
    per layer; ``lora_params`` overrides the count). ``quantized_base_bits``: the base's
    linear weights at that many bits (:data:`NF4_BITS`); ``bf16``: autocast; ``device``:
    ``"cpu"`` or ``"cuda"`` (which attention kernel runs)."""
    _check_run(batch_size, seq_len, quantized_base_bits)
    adapter = method_spec(method).is_adapter
    shape = shape if shape is not None else ModelShape.of(model)
    n_train, grad, tensors = _trainable(model, trainable, method, lora_rank)
    extra = 0
    if adapter and lora_rank > 0:
        counted, lora_tensors = lora_param_count(model, targets, lora_rank)
        extra = lora_params or counted
        n_train, grad, tensors = n_train + extra, grad + 4 * extra, tensors + lora_tensors
    weights, linear = _weight_bytes(model, quantized_base_bits)
    acts = _activation_bytes(shape, batch_size, seq_len, adapter=adapter,
                             targets=targets, rank=lora_rank, bf16=bf16, device=device,
                             linear_weights=linear)
    total = sum(p.numel() for p in model.parameters()) + extra
    return MemoryEstimate(method_spec(method).estimate_label(lora_rank), method,
                          weights + 4 * extra, grad, _states(optimizer, grad, tensors), acts,
                          n_train, total, batch_size, seq_len)


def estimate_from_config(config: object, *, method: str, batch_size: int, seq_len: int,
                         targets: Sequence[str] = (), lora_rank: int = 0,
                         optimizer: str = "adamw", dtype_bytes: int = 4,
                         quantized_base_bits: float | None = None, bf16: bool = False,
                         device: str = "cpu") -> MemoryEstimate:
    """:func:`estimate_run_memory` from the shape alone (a 7B model that cannot be built
    here): ``config`` a :class:`ModelShape`, a transformers config or TinyLM's config. The
    parameters are counted analytically (:meth:`ModelShape.parameter_count`), ``dtype_bytes``
    each; an adapter method trains LoRA at ``lora_rank`` on ``targets``, the base frozen."""
    _check_run(batch_size, seq_len, quantized_base_bits)
    adapter = method_spec(method).is_adapter
    shape = config if isinstance(config, ModelShape) else ModelShape.from_config(config)
    total, linear = shape.parameter_count(), shape.linear_count()
    per_linear = quantized_base_bits / 8 if quantized_base_bits else dtype_bytes
    weights = (total - linear) * dtype_bytes + linear * per_linear
    if not adapter:
        n_train, tensors, grad = total, 0, total * dtype_bytes     # steps: a few KB
    else:
        n_train, tensors = lora_param_count(shape, targets, lora_rank)
        grad = 4 * n_train
        weights, total = weights + grad, total + n_train
    cast = 0 if dtype_bytes != 4 else shape.vocab_size * shape.d_model + (
        0 if quantized_base_bits else linear)              # float32 weights autocast copies
    acts = _activation_bytes(shape, batch_size, seq_len, adapter=adapter,
                             targets=targets, rank=lora_rank, bf16=bf16, device=device,
                             linear_weights=cast)
    return MemoryEstimate(method_spec(method).estimate_label(lora_rank), method,
                          int(math.ceil(weights)), grad, _states(optimizer, grad, tensors),
                          acts, n_train, total, batch_size, seq_len)


def _budget(device: str | torch.device) -> tuple[int | None, str]:
    """``(usable bytes, where)``: free RAM or the GPU's free memory, × ``USABLE``."""
    dev = torch.device(device)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(USABLE * free), f"GPU {dev.index or 0}"
    free = available_memory()
    return (None if free is None else int(USABLE * free)), "this machine"


def runs_that_fit(totals: Sequence[int], device: str | torch.device = "cpu") -> int | None:
    """How many runs of the largest of ``totals`` bytes fit ``device`` at once (``None``:
    the system does not say what is free): the cap on runs trained side by side."""
    budget, worst = _budget(device)[0], max(totals, default=0)
    return None if budget is None or worst <= 0 else budget // worst


def check_fits(estimate: MemoryEstimate | Sequence[MemoryEstimate], *,
               device: str | torch.device = "cpu", batch_flag: str = "--batch",
               methods_flag: str = "--methods") -> None:
    """Refuse, in one :class:`LoralabError` line, planned runs that will not fit ``device``
    (CPU: :func:`~loralab.memory_info.available_memory`; CUDA: ``torch.cuda.mem_get_info``;
    × ``USABLE``): each run's need, what is available, and what would fit (the methods that
    do, or the largest batch). Silent when the system does not say what is free."""
    runs = [estimate] if isinstance(estimate, MemoryEstimate) else list(estimate)
    budget, where = _budget(device)
    too_big = [e for e in runs if budget is not None and e.total > budget]
    if budget is None or not too_big:
        return
    needs = ", ".join(f"{e.label} needs {format_bytes(e.total)}" for e in runs)
    fitting = sorted({e.method for e in runs if e.total <= budget})
    hints = [f"use {methods_flag} {','.join(fitting)}"] if fitting else []
    worst = max(too_big, key=lambda e: e.total)
    batch = worst.largest_batch(budget)
    if batch >= 1:
        hints.append(f"{batch_flag} {batch} or smaller (fits {worst.label})")
    elif not fitting:
        hints.append(f"not even {batch_flag} 1 fits {worst.label}: use a smaller model, a "
                     "4-bit base or a device with more memory")
    raise LoralabError(f"out of memory: {needs}; {where} has {format_bytes(budget)} available "
                       f"({USABLE:.0%} of what is free): " + ", or ".join(hints))


def measure_activations(model: nn.Module, x: torch.Tensor, *, bf16: bool = False) -> int:
    """Bytes autograd saves in one forward + loss on ``x: (B, T)``, counted by the training
    loop's own counter (distinct storages, the parameters' excluded); no backward is run."""
    with count_saved_tensors(list(model.parameters())) as saved:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = lm_loss(model(x), x.roll(-1, dims=1))
    del loss
    return saved[0]
