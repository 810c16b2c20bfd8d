"""Which parameters ``target_parameters`` selects, and where their LoRA layers go (PEFT's rules).

For every module ``m`` (below any :class:`~loralab.lora.param.LoRAParameter` already wrapping
it) and each of its own parameters ``p`` (``named_parameters(recurse=False)``, registration
order), the key ``"<m's path>.<p>"`` is selected when it equals an entry of
``target_parameters`` or ends with ``"." + entry``. The selected parameters of one module nest:
the first is wrapped innermost. A :class:`ParamTarget` names one of them with its two paths,
loralab's (``<m>.base``…) and PEFT's (``<m>.base_layer``…), and ``rank_pattern`` /
``alpha_pattern`` apply to its key, as in PEFT.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..errors import LoralabError
from .layer import LoRALayer
from .param import LoRAParameter, holder_of, param_layout

__all__ = ["ParamTarget", "find_param_targets", "param_shapes"]


@dataclass(frozen=True)
class ParamTarget:
    """Parameter ``parameter`` of the module at ``module`` (the path without wrappers);
    ``depth``: how many wrappers of the same module lie outside its own (0: outermost)."""

    module: str
    parameter: str
    depth: int

    @property
    def key(self) -> str:
        """PEFT's key for patterns: ``"<module>.<parameter>"``."""
        return f"{self.module}.{self.parameter}"

    @property
    def path(self) -> str:
        """loralab's module path of its LoRA layer."""
        return self.module + ".base" * self.depth

    @property
    def peft_path(self) -> str:
        """PEFT's module path of its LoRA layer (the file's keys)."""
        return self.module + ".base_layer" * self.depth


def _selected(key: str, entries: list[str]) -> bool:
    return key in entries or any(key.endswith(f".{e}") for e in entries)


def _chain(model: nn.Module, module: str) -> list[LoRAParameter]:
    """The wrappers at ``module`` (outermost first)."""
    out, mod = [], model.get_submodule(module)
    while isinstance(mod, LoRAParameter):
        out.append(mod)
        mod = mod.base
    return out


def find_param_targets(model: nn.Module, entries: list[str]) -> list[ParamTarget]:
    """The parameters ``entries`` (``target_parameters``) select; ``model`` is not changed.

    Raises :class:`LoralabError` when none matches, when a match is a parameter of the model
    itself or of a module that ``target_modules`` wrapped, when it is not 2-D/3-D, or when
    the module's existing wrappers (an earlier adapter's) hold other parameters (PEFT: every
    adapter with ``target_parameters`` targets the same ones)."""
    out: list[ParamTarget] = []
    for path, mod in model.named_modules():
        if isinstance(mod, LoRAParameter) or holder_of(mod) is not mod:
            continue
        module, in_module_layer = path, False
        while module.endswith(".base") and isinstance(model.get_submodule(module[:-5]),
                                                      LoRALayer):
            module = module[:-5]
            in_module_layer |= not isinstance(model.get_submodule(module), LoRAParameter)
        names = [n for n, _ in mod.named_parameters(recurse=False)
                 if _selected(f"{module}.{n}" if module else n, entries)]
        if not names:
            continue
        if not module:
            raise LoralabError(f"target_parameters matches {names[0]!r}, a parameter of the "
                               "model itself; only parameters of a submodule take LoRA")
        if in_module_layer:
            raise LoralabError(f"target_parameters matches {module}.{names[0]}, a parameter of "
                               "a layer target_modules wrapped; target it one way only")
        for n in names:
            param_layout(mod, getattr(mod, n))        # refuses a 1-D or 4-D parameter
        have = [w.parameter_name for w in reversed(_chain(model, module))]
        if have and have != names:
            raise LoralabError(f"target_parameters selects {names} of {module!r}, which "
                               f"already has LoRA on {have}; every adapter with "
                               "target_parameters must target the same parameters (as PEFT)")
        out += [ParamTarget(module, n, len(names) - 1 - i) for i, n in enumerate(names)]
    if not out:
        raise LoralabError(f"target_parameters={entries!r} matches no parameter of the model")
    return out


def param_shapes(model: nn.Module, target: ParamTarget, r: int) -> dict[str, tuple[int, ...]]:
    """The shapes ``{"A": (r·E, d_in), "B": (d_out, r·E)}`` of a rank-``r`` adapter on
    ``target``."""
    holder = holder_of(model.get_submodule(target.module))
    e, d_out, d_in, _ = param_layout(holder, getattr(holder, target.parameter))
    return {"A": (r * e, d_in), "B": (d_out, r * e)}
