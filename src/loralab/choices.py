"""The names ``loralab finetune`` offers, with a line each, importing nothing (so the CLI
lists them in ``--help`` without loading torch): the fine-tuning methods of ``--methods``
(:mod:`loralab.experiment.methods` builds each one) and the built-in texts of
``--data builtin:NAME`` (:mod:`loralab.lm.textdata` reads them).
"""

from __future__ import annotations

__all__ = ["BUILTIN_TEXTS", "DEFAULT_METHODS", "METHODS", "METHOD_HELP"]

METHOD_HELP: dict[str, str] = {
    "full": "full fine-tuning: every weight trains",
    "lora": "LoRA, W0 + (α/r)·B A on the targets, B = 0 at the start",
    "rslora": "rsLoRA: scale α/√r instead of α/r (at the larger ranks, last target set)",
    "dora": "DoRA: m · (W0 + s·B A)/‖W0 + s·B A‖_c, a trained magnitude per output row",
    "loraplus": "LoRA+: B learns at 16× A's learning rate",
    "pissa": "PiSSA: A, B start as W0's top-r singular part, the base keeps the rest",
    "olora": "OLoRA: A, B start from a QR of W0, the base keeps the rest",
    "qlora": "QLoRA: the base's linear layers in 4-bit NF4, LoRA in fp32 on top",
    "loftq": "LoftQ: an NF4 base and an adapter initialised to win back its error",
}
METHODS: tuple[str, ...] = tuple(METHOD_HELP)
DEFAULT_METHODS: tuple[str, ...] = ("full", "lora", "rslora")
BUILTIN_TEXTS: dict[str, str] = {
    "shakespeare": "English: the first 598 KB of Karpathy's tinyshakespeare (public domain), "
                   "one speech per paragraph",
    "lunyu": "Classical Chinese: the Analects of Confucius (论语, public domain), "
             "one saying per line",
}
