"""The resume folder: where an interrupted experiment leaves what the same command resumes.

Its layout, known here only::

    <out>/.resume/<key>/              key: ExperimentConfig.key() (the whole experiment)
        base.json                     {"base_sha256": ...}: the base the runs trained on
        <label>.ckpt.*                a Ctrl-C checkpoint inside a run (loralab.lm.train)
        <label>.done.safetensors      a finished run: its trained parameters and result

A state stamped with another base (it was rebuilt) is stale and discarded; the folder goes
once the outputs are written. The CLI asks :func:`check_out_dir` before any work and
:func:`resume_hint` after a Ctrl-C; the driver opens a :class:`ResumeFolder`.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..errors import LoralabError
from ..fileio import atomic_write_text, check_output_folder
from ..lm.dist import DistContext
from ..results.finetune_config import ExperimentConfig, RunSpec

__all__ = ["COMMAND", "STATE", "ResumeFolder", "check_out_dir", "resume_hint"]

COMMAND = "finetune"                    # the command whose outputs --out holds
STATE = ".resume"                       # the resume state's folder inside --out
_log = logging.getLogger("loralab")


@dataclass(frozen=True)
class ResumeFolder:
    """One experiment's resume state, ``path`` (``<out>/.resume/<key>``, or any folder the
    runs share, such as a temp folder for side-by-side runs without ``--out``)."""

    path: Path

    @classmethod
    def of(cls, out: str | Path, config: ExperimentConfig) -> ResumeFolder:
        """The resume folder of ``config`` inside ``out`` (nothing is created)."""
        return cls(Path(out) / STATE / config.key())

    def done(self, run: RunSpec) -> Path:
        """Where a finished run is kept."""
        return self.path / f"{run.label}.done.safetensors"

    def checkpoint(self, run: RunSpec) -> Path:
        """The stem of a run's Ctrl-C checkpoint (:func:`loralab.lm.train.train` adds its
        suffixes)."""
        return self.path / f"{run.label}.ckpt"

    def holds_finished_runs(self) -> bool:
        """Whether an earlier command left finished runs here."""
        return self.path.is_dir() and any(self.path.glob("*.done.safetensors"))

    def open(self, base_sha: str, dist: DistContext) -> ResumeFolder:
        """Create the folder stamped with the SHA-256 of the base its runs train on (rank 0;
        every rank waits); a state stamped with another base is discarded first."""
        stamp = self.path / "base.json"
        if dist.is_main:
            if stamp.exists():
                try:
                    old = json.loads(stamp.read_text(encoding="utf-8")).get("base_sha256")
                except (OSError, ValueError, AttributeError):
                    old = None
                if old != base_sha:
                    _log.warning("loralab: the resume state %s was trained on another base "
                                 "(it was rebuilt); discarding it", self.path)
                    shutil.rmtree(self.path)
            self.path.mkdir(parents=True, exist_ok=True)
            if not stamp.exists():
                atomic_write_text(stamp, json.dumps({"base_sha256": base_sha}) + "\n")
        dist.barrier()
        return self

    def drop_if_unused(self) -> None:
        """After a failed run: remove this state when it holds nothing to resume (only its
        ``base.json`` stamp, temp files), so a refused run leaves nothing behind in ``--out``."""
        keep = ("*.done.safetensors", "*.ckpt.json")          # what a rerun resumes from
        if self.path.is_dir() and not any(any(self.path.glob(g)) for g in keep):
            self.drop()

    def drop(self) -> None:
        """Remove this state (its outputs are written), and ``.resume`` once empty."""
        shutil.rmtree(self.path, ignore_errors=True)
        top = self.path.parent
        if top.name == STATE and top.is_dir() and not any(top.iterdir()):
            top.rmdir()


_STATE_FILE = re.compile(r"[0-9a-f]{12}/(base\.json|[\w.+-]+\.ckpt\.(json|safetensors)|"
                         r"[\w.+-]+\.done\.safetensors|\.[^/]+\.tmp)")


def _foreign_state(out: Path) -> list[str]:
    """Files under ``out/.resume`` that are not resume state (its layout is above)."""
    top = out / STATE
    if not top.is_dir():
        return [STATE] if top.exists() or top.is_symlink() else []
    return sorted(p.relative_to(out).as_posix() for p in top.rglob("*")
                  if (p.is_file() or p.is_symlink() or not p.is_dir())
                  and not _STATE_FILE.fullmatch(p.relative_to(top).as_posix()))


def check_out_dir(out: str | Path) -> None:
    """Before any work, creating nothing: ``out`` may hold only what an earlier finetune
    wrote there (and its resume state, whose every file must have a resume state's name:
    a user's file there is never mixed in or deleted), and no run may be writing there
    (:func:`loralab.fileio.check_output_folder`)."""
    check_output_folder(out, COMMAND, state=(STATE,))
    foreign = _foreign_state(Path(out))
    if foreign:
        raise LoralabError(f"--out {str(out)!r} holds {len(foreign)} file(s) in its resume "
                           f"folder that are not loralab's resume state (e.g. {foreign[0]!r}); "
                           "loralab never mixes in or deletes other files: move them out, or "
                           "give a new folder")


def resume_hint(exc: KeyboardInterrupt, out: str | Path, config: ExperimentConfig) -> str:
    """After a Ctrl-C: where the interrupted experiment left what a rerun resumes from."""
    saved = getattr(exc, "checkpoint", None)
    folder = ResumeFolder.of(out, config)
    if saved:
        return f"checkpoint saved in {saved}; run the same command again to resume"
    if folder.holds_finished_runs():
        return (f"interrupted between runs: the finished runs are kept in {folder.path}; run "
                "the same command again to resume")
    return "interrupted before a checkpoint was saved; a rerun starts this step again"
