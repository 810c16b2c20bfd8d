"""What ``loralab check`` found: an adapter folder against a base, as plain data.

:class:`CheckReport` is the whole answer; its parts are one record each:

* :class:`KeyRow`: one tensor key, ``used`` / ``unused`` / ``missing``, with its shape and
  dtype (what the base expects beside it when they differ) and its NaN/Inf count;
* :class:`ModuleRow`: one LoRA module, its rank r, α and scale ``s = α/r`` (``α/√r`` with
  rsLoRA), as the config gives them for that module;
* :class:`StageRow`: the largest logit difference ``max |z_stage − z_ref|`` on the sample
  text at one stage (loaded, merged, unloaded, saved and reloaded, 4-bit, PEFT), the size
  that stage is allowed by rounding, and whether it holds;
* :class:`Finding`: something that makes the adapter on this base differ from what was
  trained (non-finite values, unused or missing keys, another vocabulary size, an
  unconverted PiSSA/OLoRA/LoftQ init, broken ties, a stage beyond rounding);
* :class:`ServerLimit`: a documented limit of a serving tool, with its source, and whether
  it applies to this adapter.

Rounding (a float32 merge, 4-bit requantization) is a :class:`StageRow` with its size, never a
:class:`Finding`. ``CheckReport.ok`` is "no findings": ``loralab check`` exits 0, else 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["FINDING_KINDS", "STAGES", "CheckReport", "Finding", "FindingKind", "KeyRow",
           "KeyStatus", "ModuleRow", "ServerLimit", "Stage", "StageRow"]

KeyStatus = Literal["used", "unused", "missing"]
FindingKind = Literal["non-finite", "unused-key", "missing-key", "vocab-size", "unconverted-init",
                      "ties-broken", "stage"]
FINDING_KINDS: tuple[str, ...] = ("non-finite", "unused-key", "missing-key", "vocab-size",
                                  "unconverted-init", "ties-broken", "stage")
Stage = Literal["loaded", "merged", "unloaded", "saved-reloaded", "tied-reload", "plain-lora",
                "4bit-merged", "peft"]
STAGES: dict[str, str] = {
    "loaded": "adapter loaded (unmerged) vs the base: the adapter's effect",
    "merged": "merged (float32) vs loaded",
    "unloaded": "merged and unloaded vs loaded",
    "saved-reloaded": "merged, saved (save_pretrained) and reloaded vs loaded",
    "tied-reload": "that reload with tie_word_embeddings honoured (one weight for both)",
    "plain-lora": "as a plain LoRA on the unmodified base (servers, merge tools) vs loaded",
    "4bit-merged": "merged into an NF4 base (requantized) vs merged in float32",
    "peft": "PEFT's PeftModel.from_pretrained vs loralab's load_adapter",
}


@dataclass(frozen=True)
class KeyRow:
    """One adapter tensor: ``key`` (PEFT's name), its ``status``, ``shape`` and ``dtype`` as
    stored (``None`` for a missing key), ``expected`` (the shape the base wants), the
    ``non_finite`` entry count and ``why`` (for an unused or missing key)."""

    key: str
    status: KeyStatus
    shape: tuple[int, ...] | None
    dtype: str | None
    expected: tuple[int, ...] | None = None
    non_finite: int = 0
    why: str = ""


@dataclass(frozen=True)
class ModuleRow:
    """One LoRA module: its path, ``layer`` index (``None`` outside the layer list), rank,
    α and scale ``s`` (``α/r``, or ``α/√r`` with rsLoRA)."""

    path: str
    layer: int | None
    rank: int
    alpha: float
    scale: float


@dataclass(frozen=True)
class StageRow:
    """``max |z − z_ref|`` over the sample's logits at one stage, ``tolerance`` (what rounding
    allows there; ``None``: reported, never judged), ``holds`` and ``note``."""

    stage: Stage
    max_abs_diff: float | None
    tolerance: float | None
    holds: bool
    note: str = ""


@dataclass(frozen=True)
class Finding:
    """Something that makes the adapter on this base differ from what was trained."""

    kind: FindingKind
    message: str


@dataclass(frozen=True)
class ServerLimit:
    """A documented limit of a serving tool (``server``), stated as in its ``source`` (a
    URL); ``applies``: this adapter runs into it, ``advice``: what to do then."""

    server: str
    fact: str
    source: str
    applies: bool
    advice: str = ""


@dataclass
class CheckReport:
    """Everything ``loralab check ADAPTER --model BASE`` measured.

    ``base_vocab`` is the base's vocabulary (rows of its input embedding), ``saved_embeddings``
    maps each saved embedding key to its vocabulary size; ``base_tied`` says whether the base
    shares its input and output embedding, ``ties_kept`` whether the adapter keeps them
    shared; ``init`` is PEFT's ``init_lora_weights`` value, ``init_converted`` whether it
    needs no change of the base (``True`` for plain inits); ``text_tokens`` the sample's
    length; ``stages_note`` why the stages were skipped, when they were."""

    adapter: str
    base: str
    keys: list[KeyRow] = field(default_factory=list)
    modules: list[ModuleRow] = field(default_factory=list)
    layers: list[int] = field(default_factory=list)
    modules_to_save: list[str] = field(default_factory=list)
    base_vocab: int = 0
    saved_embeddings: dict[str, int] = field(default_factory=dict)
    base_tied: bool = False
    ties_kept: bool = True
    init: bool | str = True
    init_converted: bool = True
    text_tokens: int = 0
    stages: list[StageRow] = field(default_factory=list)
    stages_note: str = ""
    findings: list[Finding] = field(default_factory=list)
    limits: list[ServerLimit] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No findings: the adapter on this base is what was trained (exit code 0)."""
        return not self.findings

    def count(self, status: KeyStatus) -> int:
        """How many keys have ``status``."""
        return sum(1 for k in self.keys if k.status == status)

    def to_dict(self) -> dict[str, Any]:
        """The ``--json`` file: every field, plus ``ok`` and the key counts."""
        out = asdict(self)
        out["ok"] = self.ok
        out["key_counts"] = {s: self.count(s) for s in ("used", "unused", "missing")}
        return out
