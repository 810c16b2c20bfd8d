"""The gradient audit: after one training step, did every adapter parameter learn?

The most common way LoRA fails is silently: the loss goes down a little (or not at all) and
the adapter stays at its start because its factors got no gradient. :func:`watch_gradients`
is a context around one step (forward, backward, optimizer step, in any loop)::

    with watch_gradients(model) as watch:
        loss_fn(model(x), y).backward(); optimizer.step(); optimizer.zero_grad()
    audit = watch.audit()          # GradientAudit: audit.ok, audit.problems, audit.message()

On entry it copies every active adapter parameter (A, B, lora_B's bias, DoRA's magnitude),
puts a gradient hook on each trainable one (so the audit works even when the loop clears
``.grad`` after the step) and a forward hook on each LoRA layer (did it run, and with
autograd on?). On exit it names each parameter that did not get a finite, non-zero gradient
and move, with its likely cause (:data:`CAUSES`).

**The rule for B = 0.** With ``ΔW = s·B A`` the gradients are

    ∂L/∂A = s · Bᵀ G,    ∂L/∂B = s · G Aᵀ,     G = ∂L/∂(ΔW) (d_out, d_in)

(through the layer's input for Linear: ``G = Σ_tokens gy xᵀ``; the same holds for embeddings
and convolutions, and for DoRA, whose norm term also reaches A only through B). So a factor's
gradient is exactly zero when its partner is exactly zero, and, for a G ≠ 0, only then (up
to a G orthogonal to the partner, which does not happen in practice). LoRA's init sets B = 0
(embeddings: A = 0), so at the first step **A's gradient is zero iff B is zero**: the audit
expects an exactly zero gradient (and no move) for a factor whose partner was zero before
the step, and calls any other zero gradient a problem. Both factors zero: neither can ever
train (``both_zero``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from ..errors import LoralabError
from .layer import LoRALayer
from .state import lora_layers

__all__ = ["CAUSES", "Cause", "GradientAudit", "GradientGuard", "GradientWatch", "ParamCheck",
           "Role", "watch_gradients"]

Role = Literal["A", "B", "bias", "magnitude"]
Cause = Literal["frozen", "inactive", "unused", "checkpointing", "no_gradient", "non_finite",
                "zero_gradient", "both_zero", "not_moved"]

CAUSES: dict[Cause, str] = {
    "frozen": "requires_grad is False: frozen by a call after the adapter was added "
              "(requires_grad_(False), a freeze loop); set requires_grad=True on it",
    "inactive": "its layer is merged or its adapters are disabled, so the forward does not use it",
    "unused": "the forward never called its layer: the target module is not on the model's "
              "path (check target_modules)",
    "checkpointing": "its layer ran only without autograd: gradient checkpointing (reentrant) "
                     "without input gradients; call model.enable_input_require_grads() "
                     "(transformers) or checkpoint with use_reentrant=False",
    "no_gradient": "its layer ran with autograd but no gradient came back: its output does not "
                   "reach the loss (detached, or the loss does not use it)",
    "non_finite": "its gradient holds NaN/Inf: lower the learning rate or check the inputs",
    "zero_gradient": "its gradient is exactly zero although its partner factor is not: the "
                     "layer's input or output gradient is zero",
    "both_zero": "A and B are both zero, so neither can ever get a gradient: initialise one "
                 "of them (init_lora_weights)",
    "not_moved": "it got a gradient but did not change: it is not in the optimizer (built "
                 "before the adapter was added?) or the learning rate is 0",
}


@dataclass(frozen=True)
class ParamCheck:
    """One adapter parameter after the step.

    Attributes:
        name: its name in ``model.named_parameters()``.
        layer: its LoRA layer's module path; ``role``: which factor (:data:`Role`).
        grad_norm: ‖∂L/∂p‖_F summed over the step's backward passes (``None``: no gradient
            arrived; ``nan``: a non-finite one).
        moved: whether any entry changed in the step.
        expected_zero: its partner factor was exactly zero, so a zero gradient is right.
        cause: why it did not learn (:data:`CAUSES`), ``None`` when it did (or was expected
            not to).
    """

    name: str
    layer: str
    role: Role
    grad_norm: float | None
    moved: bool
    expected_zero: bool = False
    cause: Cause | None = None

    @property
    def ok(self) -> bool:
        return self.cause is None

    def line(self) -> str:
        """``name: cause text``."""
        return f"{self.name}: {CAUSES[self.cause]}" if self.cause else f"{self.name}: ok"


@dataclass(frozen=True)
class GradientAudit:
    """Every active adapter parameter of a model after one step (:class:`ParamCheck` each)."""

    checks: tuple[ParamCheck, ...]

    @property
    def ok(self) -> bool:
        """Every parameter learned or, by the B = 0 rule, was right not to; and there was one."""
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def problems(self) -> tuple[ParamCheck, ...]:
        return tuple(c for c in self.checks if not c.ok)

    def message(self) -> str:
        """One line: how many parameters did not learn, the first one and its cause."""
        if not self.checks:
            return "the gradient audit found no LoRA adapter parameter in the model"
        bad = self.problems
        if not bad:
            return f"all {len(self.checks)} adapter parameters learned"
        first = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        return (f"{len(bad)} of {len(self.checks)} adapter parameters did not learn in the step;"
                f" {first.name}{more}: {CAUSES[first.cause]}")

    def check(self) -> None:
        """Raise :class:`~loralab.errors.LoralabError` with :meth:`message` unless ``ok``."""
        if not self.ok:
            raise LoralabError(self.message())


@dataclass
class _Seen:
    """What the hooks saw: per parameter the summed squared gradient norm and finiteness; per
    layer the calls with and without autograd."""

    grad_sq: dict[int, float] = field(default_factory=dict)
    finite: dict[int, bool] = field(default_factory=dict)
    calls: dict[str, list[int]] = field(default_factory=dict)   # [with grad, without]


def _roles(layer: LoRALayer) -> list[tuple[Role, torch.Tensor, torch.Tensor | None]]:
    """The active adapters' parameters with their role and partner factor (``None``: none)."""
    out: list[tuple[Role, torch.Tensor, torch.Tensor | None]] = []
    for name in layer.active_adapters:
        a, b = layer.factors(name)
        out += [("A", a, b), ("B", b, a)]
        bias = layer.lora_bias_param(name)
        if bias is not None:
            out.append(("bias", bias, None))
        if name in layer.lora_magnitude_vector:
            out.append(("magnitude", layer.lora_magnitude_vector[name], None))
    return out


class GradientWatch:
    """The context of :func:`watch_gradients`; :meth:`audit` after it closed."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._names = {id(p): n for n, p in model.named_parameters()}
        self._layers = lora_layers(model)
        self._before: dict[int, torch.Tensor] = {}
        self._seen = _Seen()
        self._hooks: list = []

    def __enter__(self) -> GradientWatch:
        seen = self._seen
        for path, layer in self._layers.items():
            seen.calls[path] = [0, 0]
            self._hooks.append(layer.register_forward_pre_hook(self._count(path)))
            for _, p, _ in _roles(layer):
                self._before[id(p)] = p.detach().clone()
                if p.requires_grad:
                    self._hooks.append(p.register_hook(self._record(id(p))))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def _count(self, path: str):
        def hook(_module: nn.Module, _args: object) -> None:
            self._seen.calls[path][0 if torch.is_grad_enabled() else 1] += 1
        return hook

    def _record(self, key: int):
        def hook(grad: torch.Tensor) -> None:
            g = grad.detach().float()
            finite = bool(torch.isfinite(g).all())
            self._seen.finite[key] = self._seen.finite.get(key, True) and finite
            self._seen.grad_sq[key] = self._seen.grad_sq.get(key, 0.0) + (
                float(g.pow(2).sum()) if finite else math.nan)
        return hook

    def audit(self) -> GradientAudit:
        """The :class:`GradientAudit` of the step the context enclosed."""
        checks = []
        for path, layer in self._layers.items():
            for role, p, partner in _roles(layer):
                checks.append(self._check(path, layer, role, p, partner))
        return GradientAudit(tuple(checks))

    def _check(self, path: str, layer: LoRALayer, role: Role, p: torch.Tensor,
               partner: torch.Tensor | None) -> ParamCheck:
        key, seen = id(p), self._seen
        sq = seen.grad_sq.get(key)
        norm = None if sq is None else math.sqrt(sq) if math.isfinite(sq) else math.nan
        moved = not torch.equal(self._before[key], p.detach())
        partner_zero = partner is not None and not bool(self._before[id(partner)].any())
        self_zero = not bool(self._before[key].any())
        cause = _cause(p, norm, moved, partner_zero and self_zero, partner_zero,
                       layer.disabled or layer.merged, seen.calls[path])
        return ParamCheck(self._names.get(key, f"{path}.{role}"), path, role, norm, moved,
                          expected_zero=partner_zero, cause=cause)


def _cause(p: torch.Tensor, norm: float | None, moved: bool, both_zero: bool,
           partner_zero: bool, inactive: bool, calls: list[int]) -> Cause | None:
    """Why ``p`` did not learn (``None``: it did, or by the B = 0 rule it was right not to)."""
    if not p.requires_grad:
        return "frozen"
    if inactive:
        return "inactive"
    if both_zero:
        return "both_zero"
    if norm is None:
        if calls[0] + calls[1] == 0:
            return "unused"
        return "checkpointing" if calls[0] == 0 else "no_gradient"
    if math.isnan(norm):
        return "non_finite"
    if norm == 0.0:
        return None if partner_zero else "zero_gradient"
    return None if moved else "not_moved"


def watch_gradients(model: nn.Module) -> GradientWatch:
    """A context around one training step of ``model`` (a model with LoRA layers); after it,
    ``watch.audit()`` is the :class:`GradientAudit` (the rules: this module's docstring)."""
    return GradientWatch(model)


class GradientGuard(GradientWatch):
    """:class:`GradientWatch` that raises :class:`~loralab.errors.LoralabError` on exit when
    the audit fails (``what`` prefixes the message, e.g. the run's name). A step that failed
    because nothing could get a gradient (``loss.backward()`` on a loss without a graph) is
    reported by the audit's message instead of autograd's."""

    def __init__(self, model: nn.Module, what: str = "") -> None:
        super().__init__(model)
        self.what = what

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        super().__exit__(exc_type, exc, tb)
        if exc_type is not None and not (exc_type is RuntimeError
                                         and "does not require grad" in str(exc)):
            return                                   # a real error: let it through
        audit = self.audit()
        if not audit.ok:
            prefix = f"{self.what}: " if self.what else ""
            raise LoralabError(f"{prefix}gradient audit after the first step: "
                               f"{audit.message()}") from None
