"""transformers models with LoRA inside: ``save_pretrained`` and ``Trainer`` save the adapter.

A transformers model's ``save_pretrained`` writes its ``state_dict``; with LoRA layers inside
that holds ``…q_proj.base.weight`` keys, and ``from_pretrained`` would then initialise the
wrapped projections at random (its load report is the only hint). So :func:`inject_lora`
gives such a model a ``save_pretrained`` that writes the **adapter** (PEFT's folder, with
``base_model_name_or_path``), as transformers' own PEFT integration does: the folder loads
with ``PeftModel.from_pretrained(base, folder)``, with ``loralab.lora.load_adapter``, and (peft
installed) with ``AutoModel….from_pretrained(folder)``, which fetches the base and applies
the adapter. ``Trainer.save_model`` and its checkpoints call ``save_pretrained``, so they are
adapter-only too; :class:`AdapterCheckpointCallback` says so in a ``Trainer``'s callbacks and
checks it. ``unload`` / ``unload_lora`` give the model its own ``save_pretrained`` back.

Nothing here imports transformers until a callback is created.
"""

from __future__ import annotations

import os
import types
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import LoralabError
from .adapters import CONFIG_NAME, save_adapter

__all__ = ["AdapterCheckpointCallback", "guard_save_pretrained", "is_transformers_model",
           "require_transformers", "unguard_save_pretrained"]

HF_HINT = 'pip install "loralab[hf]"'


def require_transformers() -> Any:
    """Import transformers, or raise one clear line saying how to install it."""
    try:
        import transformers
    except ImportError:
        raise LoralabError(f"this needs transformers, which is not installed; {HF_HINT}") \
            from None
    return transformers


def is_transformers_model(model: nn.Module) -> bool:
    """A transformers ``PreTrainedModel`` (told by its methods, without importing it)."""
    return callable(getattr(type(model), "save_pretrained", None)) and hasattr(model, "config")


def _save_pretrained_adapter(self: nn.Module, save_directory: str | os.PathLike[str],
                             *args: Any, **kwargs: Any) -> None:
    """``save_pretrained`` of a model with LoRA inside: the adapter, in PEFT's format
    (PEFT's ``save_embedding_layers`` keyword is honoured)."""
    save_adapter(self, save_directory,
                 save_embedding_layers=kwargs.get("save_embedding_layers", "auto"))


def guard_save_pretrained(model: nn.Module) -> None:
    """Make ``model.save_pretrained`` write the adapter (transformers models only)."""
    if is_transformers_model(model):
        model.save_pretrained = types.MethodType(_save_pretrained_adapter, model)


def unguard_save_pretrained(model: nn.Module) -> None:
    """Give ``model`` back its class's ``save_pretrained``."""
    if "save_pretrained" in vars(model):
        del model.save_pretrained


def AdapterCheckpointCallback() -> Any:  # noqa: N802 (a class made on demand)
    """A ``transformers.TrainerCallback`` that checks each checkpoint is adapter-only.

    ``Trainer(model, ..., callbacks=[AdapterCheckpointCallback()])``: after every save it
    verifies the checkpoint folder holds ``adapter_config.json`` (what loralab's
    ``save_pretrained`` writes) and raises if a full state dict was written instead (a model
    saved some other way).
    """
    transformers = require_transformers()

    class _Callback(transformers.TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir() and not (folder / CONFIG_NAME).is_file():
                raise LoralabError(f"checkpoint {str(folder)!r} has no {CONFIG_NAME}: the "
                                   "model was not saved as a loralab adapter")

    return _Callback()
