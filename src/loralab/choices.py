"""The names ``loralab finetune`` offers, with a line each, importing nothing heavy (so the CLI
lists them in ``--help`` without loading torch): the fine-tuning methods of ``--methods``,
the studies of ``--study`` (:mod:`loralab.results.study_plan` plans them)
(read from the registry :data:`loralab.method_specs.METHOD_SPECS`;
:mod:`loralab.experiment.methods` builds each one) and the built-in texts of
``--data builtin:NAME`` (:mod:`loralab.lm.textdata` reads them).
"""

from __future__ import annotations

from .method_specs import METHOD_SPECS, Method

__all__ = ["BUILTIN_TEXTS", "DEFAULT_METHODS", "METHODS", "METHOD_HELP", "STUDIES"]

METHOD_HELP: dict[str, str] = {name: s.help for name, s in METHOD_SPECS.items()}
METHODS: tuple[Method, ...] = tuple(s.name for s in METHOD_SPECS.values())
DEFAULT_METHODS: tuple[Method, ...] = tuple(s.name for s in METHOD_SPECS.values() if s.default)
BUILTIN_TEXTS: dict[str, str] = {
    "shakespeare": "English: the first 598 KB of Karpathy's tinyshakespeare (public domain), "
                   "one speech per paragraph",
    "lunyu": "Classical Chinese: the Analects of Confucius (论语, public domain), "
             "one saying per line",
}
STUDIES: dict[str, str] = {
    "lr": "full fine-tuning and LoRA at each rank over a log grid of learning rates (--lrs): "
          "each curve's best learning rate, LoRA's best over full's (Schulman et al. 2025)",
    "placement": "LoRA on attention only, MLP only and all linear layers at matched "
                 "trainable-parameter counts, full fine-tuning beside (--ranks: the budgets, "
                 "all linear layers at r; default 4,16, a --model 8,32)",
}
