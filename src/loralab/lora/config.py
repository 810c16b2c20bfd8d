"""LoRA settings in PEFT's names: :class:`AdapterConfig`, and the one check of each value.

Every field is ``peft.LoraConfig``'s, with PEFT's values, and ``adapter_config.json`` maps
onto it one to one (:func:`config_from_peft` / :func:`config_to_peft`). A value is checked
once, where it enters (``__post_init__``); the init option (``init_lora_weights`` with
``loftq_config``) is parsed there once into a typed :class:`~loralab.lora.init_option.InitOption`
(``config.init``), and PEFT's value is written back only for ``adapter_config.json``. DoRA
(``use_dora``), LoftQ (``init_lora_weights="loftq"``), PiSSA and OLoRA are implemented; a
field loralab does not implement (EVA, CorDA, ...) is refused by name when
it is set to anything but its "off" value.
:func:`as_adapter_config` takes an :class:`AdapterConfig`, a ``peft.LoraConfig`` object or
its dict, so ``inject_lora(model, peft.LoraConfig(...))`` works as PEFT users expect.

Per-module values (PEFT's rules): ``rank_pattern`` / ``alpha_pattern`` map a regex to r / α;
the first key ``k`` with ``re.match(rf"(.*\\.)?({k})$", path)`` wins (:meth:`rank_for`);
:meth:`AdapterConfig.layer_spec` gives one module's :class:`~loralab.lora.spec.LayerSpec`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from ..errors import LoralabError
from .init_option import InitOption, parse_init
from .param_config import check_target_parameters
from .spec import LayerSpec, check_alpha, check_layer_args
from .variants import refuse_field

__all__ = [
    "TASK_HEADS",
    "TASK_TYPES",
    "AdapterConfig",
    "BiasKind",
    "InitValue",
    "as_adapter_config",
    "check_layer_args",
    "config_from_peft",
    "config_to_peft",
    "pattern_key",
]

# PEFT's init_lora_weights: True, False, "gaussian", "pissa", "pissa_niter_K", "olora", "loftq"
InitValue = bool | str
BiasKind = Literal["none", "all", "lora_only"]
BIASES: tuple[str, ...] = ("none", "all", "lora_only")
# PEFT's task types, and the heads PEFT trains in full for them (modules_to_save).
TASK_HEADS: dict[str, tuple[str, ...]] = {
    "SEQ_CLS": ("classifier", "score"), "TOKEN_CLS": ("classifier", "score"),
    "QUESTION_ANS": ("qa_outputs",), "CAUSAL_LM": (), "SEQ_2_SEQ_LM": (),
    "FEATURE_EXTRACTION": (),
}
TASK_TYPES: tuple[str, ...] = tuple(TASK_HEADS)
# Fields of PEFT's LoraConfig that describe the run, not the math: kept or ignored on load.
_DESCRIPTIVE = {"peft_type", "base_model_name_or_path", "revision", "inference_mode",
                "auto_mapping", "peft_version", "megatron_core", "qalora_group_size",
                "runtime_config"}


def _check_names(value: object, field_name: str, allow_none: bool,
                 allow_all_linear: bool = False) -> list[str] | str | None:
    """A list of module names/suffixes, or one regex string (PEFT's two forms)."""
    if value is None:
        if allow_none:
            return None
        raise LoralabError(f"{field_name}=None is not allowed; give module names or suffixes "
                           "(e.g. ['q_proj', 'v_proj']), a regex string or 'all-linear'")
    if isinstance(value, str):
        if value.lower() == "all-linear":
            if allow_all_linear:
                return "all-linear"
            raise LoralabError(f"{field_name}={value!r} is only allowed for target_modules")
        if not value:
            raise LoralabError(f"{field_name}='' is not allowed; give a non-empty regex")
        try:
            re.compile(value)
        except re.error as exc:
            raise LoralabError(f"{field_name}={value!r} is not a valid regex: {exc}") from None
        return value
    if isinstance(value, Sequence | set | frozenset):
        items = list(value)
        if not items or any(not isinstance(v, str) or not v for v in items):
            raise LoralabError(f"{field_name}={value!r} is not allowed; give a non-empty list "
                               "of non-empty module names (or one regex string)")
        return sorted(set(items)) if isinstance(value, set | frozenset) else items
    raise LoralabError(f"{field_name}={value!r} is not allowed; give a list of module names "
                       "or a regex string")


def _check_pattern(value: object, field_name: str, is_rank: bool) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise LoralabError(f"{field_name}={value!r} is not allowed; give a dict "
                           "{regex: value}")
    out = {}
    for key, v in value.items():
        if not isinstance(key, str) or not key:
            raise LoralabError(f"{field_name} key {key!r} is not allowed; keys are regexes")
        try:
            re.compile(key)
        except re.error as exc:
            raise LoralabError(f"{field_name} key {key!r} is not a valid regex: {exc}") from None
        if is_rank and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise LoralabError(f"{field_name}[{key!r}]={v!r} is not allowed; ranks are "
                               "integers >= 1")
        if not is_rank:
            check_alpha(f"{field_name}[{key!r}]", v)
        out[key] = v
    return out


def _check_layers(value: object) -> int | list[int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise LoralabError(f"layers_to_transform={value} is not allowed; layer indices "
                               "are >= 0")
        return value
    if isinstance(value, Sequence) and not isinstance(value, str):
        items = list(value)
        if all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in items):
            return items
    raise LoralabError(f"layers_to_transform={value!r} is not allowed; give a layer index "
                       "(e.g. 0) or a list of them (e.g. [0, 2])")


def _check_loftq(value: object, init: InitOption) -> dict[str, int]:
    """PEFT's ``loftq_config`` dict: with ``"loftq"`` the parsed options (defaults filled in,
    ``{"loftq_bits": 4, "loftq_iter": 1}``), else the dict as given."""
    value = dict(value or {}) if isinstance(value, Mapping | type(None)) else value
    if not isinstance(value, dict):
        raise LoralabError(f"loftq_config={value!r} is not allowed; give a dict such as "
                           "{'loftq_bits': 4, 'loftq_iter': 1}")
    return {**value, **init.loftq.to_peft()} if init.loftq is not None else value


def _check_tokens(value: object) -> list[int] | dict[str, list[int]] | None:
    """PEFT's ``trainable_token_indices``: a list of token ids (the input embedding's) or a
    dict ``{module name: token ids}``; ids are integers >= 0, each list non-empty."""
    def ids(v: object, where: str) -> list[int]:
        if isinstance(v, Sequence) and not isinstance(v, str) and v and all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in v):
            return list(v)
        raise LoralabError(f"trainable_token_indices{where}={v!r} is not allowed; give a "
                           "non-empty list of token ids >= 0")
    if value is None:
        return None
    if isinstance(value, Mapping):
        if not value or any(not isinstance(k, str) or not k for k in value):
            raise LoralabError(f"trainable_token_indices={value!r} is not allowed; give a "
                               "list of token ids or {module name: token ids}")
        return {k: ids(v, f"[{k!r}]") for k, v in value.items()}
    return ids(value, "")


def pattern_key(keys: Sequence[str], path: str) -> str | None:
    """PEFT's ``get_pattern_key``: the first key ``k`` with ``(.*\\.)?(k)$`` matching ``path``."""
    return next((k for k in keys if re.match(rf"(.*\.)?({k})$", path)), None)


@dataclass
class AdapterConfig:
    """LoRA settings, named and valued as in ``peft.LoraConfig``.

    r: rank (≥ 1). lora_alpha: α (> 0); the update is scaled by α/r, or α/√r when
    ``use_rslora``. target_modules: module names/suffixes, a regex for the full path, or
    ``"all-linear"`` (every Linear/Conv1D but the output head). exclude_modules: the same
    forms, never wrapped. lora_dropout: on the LoRA branch's input, 0 ≤ p < 1.
    init_lora_weights: True (A Kaiming-uniform, B = 0), False (both random: the update starts
    non-zero), ``"gaussian"`` (A ~ N(0, 1/r²), B = 0), ``"pissa"`` / ``"pissa_niter_K"``
    (top-r SVD moved into the adapter, exact or randomized), ``"olora"`` (QR) or ``"loftq"``
    (with ``loftq_config``); parsed once into ``init``, an
    :class:`~loralab.lora.init_option.InitOption`. bias: which biases train: ``"none"``,
    ``"all"``, ``"lora_only"``.
    fan_in_fan_out: the base stores ``W`` as ``(d_in, d_out)`` (GPT-2's ``Conv1D``); set
    per layer from its type, as PEFT does. modules_to_save: modules trained in full and saved
    with the adapter (a head); ``task_type`` adds PEFT's heads (:data:`TASK_HEADS`).
    rank_pattern / alpha_pattern: ``{regex: r or α}`` per module. layers_to_transform: a
    layer index or a list of them; layers_pattern: the name of the layer list
    (``"layers"``, ``"h"``). lora_bias: ``lora_B`` gets a bias (trained, merged as
    ``b += s·b_B``). use_dora: DoRA (magnitude and direction; Linear, Conv1D, Embedding,
    Conv1d/2d/3d).
    loftq_config: with ``init_lora_weights="loftq"``, ``{"loftq_bits": 4|8, "loftq_iter": N}``.
    target_parameters: parameter paths/suffixes (``"mlp.experts.gate_up_proj"``): LoRA on a
    bare 2-D/3-D ``nn.Parameter`` (:mod:`loralab.lora.param`); ``target_modules=[]`` then
    targets parameters only.
    trainable_token_indices: rows of the input embedding (a list) or of named modules (a dict
    ``{name: ids}``) that train in full (:mod:`loralab.lora.tokens`). ensure_weight_tying: a
    head tied to the input embedding follows its adapter (trainable tokens, LoRA on
    ``embed_tokens``, ``modules_to_save``); tied layers with different token ids are refused.
    """

    r: int = 8
    lora_alpha: float = 16
    target_modules: list[str] | str | None = field(default=None)
    exclude_modules: list[str] | str | None = None
    lora_dropout: float = 0.0
    use_rslora: bool = False
    init_lora_weights: InitValue = True
    bias: BiasKind = "none"
    fan_in_fan_out: bool = False
    modules_to_save: list[str] | None = None
    task_type: str | None = None
    rank_pattern: dict[str, int] = field(default_factory=dict)
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    layers_to_transform: int | list[int] | None = None
    layers_pattern: list[str] | str | None = None
    lora_bias: bool = False
    use_dora: bool = False
    loftq_config: dict[str, int] = field(default_factory=dict)
    target_parameters: list[str] | None = None
    trainable_token_indices: list[int] | dict[str, list[int]] | None = None
    ensure_weight_tying: bool = False
    base_model_name_or_path: str | None = None
    revision: str | None = None

    def __post_init__(self) -> None:
        check_layer_args(self.r, self.lora_alpha, self.lora_dropout, self.use_rslora,
                         self.init_lora_weights)
        if self.bias not in BIASES:
            raise LoralabError(f"bias={self.bias!r} is not allowed; use one of "
                               f"{', '.join(map(repr, BIASES))}")
        for name in ("fan_in_fan_out", "lora_bias", "use_dora", "ensure_weight_tying"):
            if not isinstance(getattr(self, name), bool):
                raise LoralabError(f"{name}={getattr(self, name)!r} is not allowed; use "
                                   "True/False")
        if not isinstance(self.loftq_config, Mapping | type(None)):
            _check_loftq(self.loftq_config, InitOption())
        self.init: InitOption = parse_init(self.init_lora_weights, self.loftq_config)
        self.loftq_config = _check_loftq(self.loftq_config, self.init)
        if self.lora_bias and self.init.kind not in ("default", "random"):
            raise LoralabError(f"lora_bias=True with init_lora_weights="
                               f"{self.init_lora_weights!r} is not allowed; lora_bias needs "
                               "init_lora_weights True or False (as PEFT)")
        self.target_parameters = check_target_parameters(self)
        if self.target_parameters and self.target_modules in (None, []):
            self.target_modules = []     # PEFT's way to target parameters only
        else:
            self.target_modules = _check_names(self.target_modules, "target_modules", False,
                                               True)
        self.exclude_modules = _check_names(self.exclude_modules, "exclude_modules", True)
        if self.modules_to_save is not None:
            saved = _check_names(self.modules_to_save, "modules_to_save", True)
            if isinstance(saved, str):
                raise LoralabError(f"modules_to_save={saved!r} is not allowed; give a list "
                                   "of module names")
            self.modules_to_save = saved
        if self.task_type is not None and self.task_type not in TASK_HEADS:
            raise LoralabError(f"task_type={self.task_type!r} is not allowed; use one of "
                               f"{', '.join(TASK_TYPES)} or None")
        self.rank_pattern = _check_pattern(self.rank_pattern or {}, "rank_pattern", True)
        self.alpha_pattern = _check_pattern(self.alpha_pattern or {}, "alpha_pattern", False)
        self.layers_to_transform = _check_layers(self.layers_to_transform)
        self.trainable_token_indices = _check_tokens(self.trainable_token_indices)
        lp = self.layers_pattern
        if lp is not None and lp != [] and _check_names(lp, "layers_pattern", True) is None:
            raise LoralabError(f"layers_pattern={lp!r} is not allowed")

    @property
    def scaling(self) -> float:
        """α/r, or α/√r with rsLoRA (of the config's own r and α)."""
        return self.lora_alpha / (math.sqrt(self.r) if self.use_rslora else self.r)

    def rank_for(self, path: str) -> int:
        """``r`` of the module at ``path`` (``rank_pattern`` first, as PEFT)."""
        key = pattern_key(list(self.rank_pattern), path)
        return self.rank_pattern[key] if key is not None else self.r

    def alpha_for(self, path: str) -> float:
        """``lora_alpha`` of the module at ``path`` (``alpha_pattern`` first, as PEFT)."""
        key = pattern_key(list(self.alpha_pattern), path)
        return self.alpha_pattern[key] if key is not None else self.lora_alpha

    def layer_spec(self, path: str, autocast_adapter_dtype: bool = True) -> LayerSpec:
        """The :class:`~loralab.lora.spec.LayerSpec` of the module at ``path`` (its own r and
        α from ``rank_pattern`` / ``alpha_pattern``)."""
        return LayerSpec(self.rank_for(path), self.alpha_for(path), self.lora_dropout,
                         self.use_rslora, self.init, self.lora_bias, self.use_dora,
                         autocast_adapter_dtype)

    def saved_modules(self) -> list[str]:
        """``modules_to_save`` with the task's heads added (PEFT's order: user's, then heads)."""
        names = list(self.modules_to_save or [])
        names += [h for h in TASK_HEADS.get(self.task_type or "", ()) if h not in names]
        return names


_FIELDS = {f.name for f in fields(AdapterConfig)}
# Fields PEFT has and loralab does not implement: allowed only at their "off" value.
_OFF = (None, False, {}, [], "", 0)


def config_from_peft(data: Mapping[str, Any], source: str = "adapter_config.json"
                     ) -> AdapterConfig:
    """An :class:`AdapterConfig` from a PEFT ``adapter_config.json`` dict (or
    ``LoraConfig.to_dict()``). Refuses, naming it, a field that would change the math and
    that loralab does not implement (EVA, CorDA, ...)."""
    if not isinstance(data, Mapping):
        raise LoralabError(f"{source}: expected a JSON object, got {type(data).__name__}")
    if data.get("peft_type", "LORA") not in ("LORA", None):
        raise LoralabError(f"{source}: peft_type={data.get('peft_type')!r} is not allowed; "
                           "only 'LORA' adapters can be loaded")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key in _FIELDS:
            kwargs[key] = value
        elif key in _DESCRIPTIVE:
            continue
        elif value not in _OFF:
            raise refuse_field(key, value, source)
    kwargs.setdefault("lora_alpha", 8)                  # PEFT's default α
    if isinstance(kwargs.get("target_modules"), set | frozenset):
        kwargs["target_modules"] = sorted(kwargs["target_modules"])
    if kwargs.get("modules_to_save") is not None:
        kwargs["modules_to_save"] = list(dict.fromkeys(kwargs["modules_to_save"]))
    if kwargs.get("task_type") is not None:
        kwargs["task_type"] = str(getattr(kwargs["task_type"], "value", kwargs["task_type"]))
    try:
        return AdapterConfig(**kwargs)
    except LoralabError as exc:
        raise LoralabError(f"{source}: {exc}") from None


def config_to_peft(config: AdapterConfig) -> dict[str, Any]:
    """The ``adapter_config.json`` dict (PEFT ``LoraConfig`` fields) for ``config``; the init
    option is written as PEFT's value (``config.init.peft_value``)."""
    out = {f.name: getattr(config, f.name) for f in fields(AdapterConfig)}
    out["init_lora_weights"] = config.init.peft_value
    out.update(peft_type="LORA", inference_mode=True)
    return out


def as_adapter_config(config: object) -> AdapterConfig:
    """An :class:`AdapterConfig` from itself, a ``peft.LoraConfig`` or a dict of its fields."""
    if isinstance(config, AdapterConfig):
        return config
    if isinstance(config, Mapping):
        return config_from_peft(config, "config")
    to_dict = getattr(config, "to_dict", None)
    if callable(to_dict) and getattr(config, "peft_type", None) is not None:
        data = dict(to_dict())
        data["peft_type"] = str(getattr(data.get("peft_type"), "value", data.get("peft_type")))
        return config_from_peft(data, type(config).__name__)
    raise LoralabError(f"config of type {type(config).__name__} is not allowed; give an "
                       "AdapterConfig, a peft.LoraConfig or a dict of LoraConfig fields")
