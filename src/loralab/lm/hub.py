"""A ``--model`` hub id: checked against the hub once, with a short timeout, or found in the
hub cache when offline (:func:`hub_source`); one clear line for every way it can fail."""

from __future__ import annotations

import os

from ..errors import LoralabError

__all__ = ["HUB_TIMEOUT_S", "hub_source"]

HUB_TIMEOUT_S = 10.0          # one metadata request to the hub, then "unreachable"
_TRUE = {"1", "ON", "YES", "TRUE"}


def _offline() -> bool:
    if any(os.environ.get(k, "").upper() in _TRUE for k in ("HF_HUB_OFFLINE",
                                                              "TRANSFORMERS_OFFLINE")):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:                                   # pragma: no cover (a transformers dep)
        return False
    return bool(constants.HF_HUB_OFFLINE)


def _is_network_error(exc: BaseException) -> bool:
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & {"ConnectionError", "TimeoutError", "ConnectError", "TimeoutException",
                         "NetworkError", "TransportError", "OfflineModeIsEnabled"}) or (
        isinstance(exc, OSError) and not names & {"FileNotFoundError"})


def _unreachable(name: str, why: str) -> LoralabError:
    return LoralabError(f"--model {name}: not found locally (no such folder, not in the hub "
                        f"cache) and the network is unreachable ({why}); give a local model "
                        "folder, or run online once so the hub cache holds it")


def hub_source(name: str, revision: str | None) -> bool:
    """Check the hub id ``name``; return ``local_files_only`` (True: use the hub cache)."""
    from huggingface_hub import errors, model_info, try_to_load_from_cache
    from huggingface_hub.utils import validate_repo_id

    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name
    try:
        validate_repo_id(name)
    except errors.HFValidationError:
        looks_like_path = True
    if looks_like_path:
        raise LoralabError(f"--model {name}: no such folder, and it is not a hub id "
                           "(owner/name); give a folder written by save_pretrained or a hub id")
    cached = isinstance(try_to_load_from_cache(name, "config.json", revision=revision), str)
    if _offline():
        if cached:
            return True
        raise _unreachable(name, "HF_HUB_OFFLINE=1")
    try:
        model_info(name, revision=revision, timeout=HUB_TIMEOUT_S)
    except errors.RevisionNotFoundError:
        raise LoralabError(f"--revision {revision} is not a branch, tag or commit of the hub "
                           f"model {name}") from None
    except errors.GatedRepoError:
        raise LoralabError(f"--model {name} is gated on the hub; accept its licence there and "
                           "log in (hf auth login), or give a local folder") from None
    except errors.RepositoryNotFoundError:
        raise LoralabError(f"--model {name}: no such local folder and no such model on the "
                           "hub (or it is private); check the name") from None
    except Exception as exc:                       # noqa: BLE001 (classified just below)
        if not _is_network_error(exc):
            raise LoralabError(f"--model {name}: the hub answered {type(exc).__name__}: "
                               f"{str(exc).splitlines()[0] if str(exc) else ''}") from None
        if cached:
            return True
        raise _unreachable(name, f"{type(exc).__name__}") from None
    return False
