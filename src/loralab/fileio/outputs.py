"""The one rule for what a command may write, and where.

* **Outputs never collide.** Two outputs of one command that name one file (``--out x
  --json x``, ``a.png`` and ``./a.png``, a symlink or hard link) are refused before any work:
  :func:`check_distinct`.
* **A file output** (``--out fig.png``, ``--json r.json``) may replace a regular file of that
  name that loralab wrote (its record beside it, :mod:`.owned`; any other file only with
  ``--force``), never a folder, FIFO or device; while the command runs it holds a lock file beside
  each one (``.<name>.loralab-lock``), so two runs cannot interleave their PNG and JSON:
  :func:`output_files`.
* **A folder output** (``finetune --out DIR``) may only hold files the same command wrote
  there before: each run records what it wrote in ``DIR/.loralab-manifest.json``, and a folder
  holding anything else is refused, naming one such file (:func:`check_output_folder`). While
  a run lasts it holds ``DIR/.loralab-lock``. Its outputs are written into a staging folder
  inside ``DIR`` and moved into place at the end (:meth:`OutputFolder.commit`); the files of
  an earlier run that this run did not write again are then **removed**, so the folder always
  describes exactly one run (no adapters of another run beside new results). Removing them
  is safe because the manifest proves loralab wrote them; a user's own file is never touched,
  since its presence makes the run refuse before any work.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from ..errors import LoralabError
from .atomic import atomic_write_text, check_output_dir, check_output_file
from .lock import OutputLock, lock_is_held
from .owned import check_replaceable, file_sha256, record_written

__all__ = ["LOCK_NAME", "MANIFEST_NAME", "OutputFolder", "check_distinct",
           "check_output_folder", "output_files", "output_folder", "same_file"]

MANIFEST_NAME = ".loralab-manifest.json"
LOCK_NAME = ".loralab-lock"
_OWN = (".loralab-", "..loralab-")          # the bookkeeping's names (and their temp files)
_STAGING = ".loralab-staging-"
_FORMAT = "loralab-manifest-1"


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name one file (after ``..``, symlinks and hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_distinct(outputs: dict[str, str | os.PathLike[str] | None]) -> None:
    """Refuse two outputs (``{flag: path}``; ``None`` = not written) naming one file."""
    items = [(flag, p) for flag, p in outputs.items() if p is not None]
    for i, (flag_a, a) in enumerate(items):
        for flag_b, b in items[i + 1:]:
            if same_file(a, b):
                raise LoralabError(f"{flag_a} {str(a)!r} and {flag_b} {str(b)!r} name the same "
                                   "file; give each output its own name")


def _lock_path(path: Path) -> Path:
    real = Path(os.path.realpath(path))
    return real.parent / f".{real.name}.loralab-lock"


@contextlib.contextmanager
def output_files(outputs: dict[str, str | os.PathLike[str] | None],
                 command: str, *, force: bool = False) -> Iterator[None]:
    """Check the file outputs (distinct, writable, regular, and either new or written by
    loralab: a user's file only with ``force``) and hold a lock beside each while the block
    runs; refuse when another run holds one. When the block ends well, each file written is
    recorded as loralab's (:mod:`loralab.fileio.owned`)."""
    check_distinct(outputs)
    items = {flag: Path(p) for flag, p in outputs.items() if p is not None}
    for flag, path in items.items():
        check_output_file(path, flag=flag)
        check_replaceable(path, f"{flag} {str(path)!r}", force=force)
    held: list[OutputLock] = []
    try:
        for flag, path in sorted(items.items(), key=lambda kv: str(_lock_path(kv[1]))):
            lock = OutputLock(_lock_path(path), f"{flag} {str(path)!r}")
            lock.acquire(command)
            held.append(lock)
        yield
        for path in items.values():
            record_written(path)
    finally:
        for lock in reversed(held):
            lock.release()


def _manifest_data(folder: Path) -> dict:
    try:
        data = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _recorded(folder: Path) -> dict[str, str]:
    """``{file: sha256}`` as the manifest records them (``{}`` for an older manifest)."""
    sums = _manifest_data(folder).get("sha256")
    return {k: v for k, v in sums.items() if isinstance(v, str)} \
        if isinstance(sums, dict) else {}


def _unproven(folder: Path, files: list[str]) -> list[str]:
    """Listed files on disk whose bytes are not those the manifest's checksum records (a
    hand-written manifest, or a file changed since): they are the user's, never removed."""
    sums = _recorded(folder)
    out = []
    for name in files:
        path = folder / name
        if path.is_file() and not path.is_symlink() and sums.get(name) != file_sha256(path):
            out.append(name)
    return out


def _manifest(folder: Path, command: str) -> list[str]:
    """The files the manifest of ``folder`` lists ([] when it has none), checked."""
    path = folder / MANIFEST_NAME
    if not path.exists():
        return []
    where = f"output folder {str(folder)!r}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict) or data.get("format") != _FORMAT \
            or not isinstance(data.get("files"), list):
        raise LoralabError(f"{where}: its manifest {MANIFEST_NAME} cannot be read; give a new "
                           "folder, or delete this one if you no longer need it")
    if data.get("command") != command:
        raise LoralabError(f"{where} holds the outputs of 'loralab {data.get('command')}', "
                           f"not of 'loralab {command}'; give another folder")
    files = data["files"]
    for name in files:
        parts = PurePosixPath(name).parts if isinstance(name, str) else ()
        if not parts or PurePosixPath(name).is_absolute() or ".." in parts \
                or "." in parts or parts[0].startswith(_OWN) or "\\" in name:
            raise LoralabError(f"{where}: its manifest lists {name!r}, which is not a file "
                               "inside the folder; give a new folder")
    return list(files)


def _foreign(folder: Path, allowed: set[str], state: Iterable[str], own: bool) -> list[str]:
    """Every file under ``folder`` that is neither listed, nor bookkeeping, nor state.
    Without a manifest (``own`` false) only the lock counts as bookkeeping: a ``.loralab-*``
    entry in a folder no run recorded is not provably a killed run's, so it is the user's."""
    found = []
    for root, dirs, files in os.walk(folder):
        rel = Path(root).relative_to(folder)
        top = rel == Path(".")
        links = [d for d in dirs if os.path.islink(os.path.join(root, d))]
        dirs[:] = [d for d in dirs if d not in links
                   and not (top and (d in state or (own and d.startswith(_OWN))))]
        for name in (*files, *links):
            if top and (name == LOCK_NAME or (own and name.startswith(_OWN))):
                continue
            path = (rel / name).as_posix()
            if path not in allowed:
                found.append(path)
    return sorted(found)


def check_output_folder(folder: str | os.PathLike[str], command: str, *,
                        state: Iterable[str] = (), flag: str = "--out",
                        _locked: bool = False) -> list[str]:
    """Check, before any work and creating nothing, that ``command`` may write into
    ``folder``: missing (its parent writable), or a folder holding only what ``command``
    wrote there before (its manifest), the ``state`` folders it keeps (e.g. ``.resume``) and
    no lock of a live run. Returns the files the manifest lists."""
    path = Path(folder)
    what = f"{flag} {str(path)!r}"
    if not path.exists():
        check_output_dir(path.parent if str(path.parent) else Path("."),
                         flag=f"{what}: folder")
        return []
    check_output_dir(path, flag=what)
    holder = None if _locked else lock_is_held(path / LOCK_NAME)
    if holder is not None:
        raise OutputLock(path / LOCK_NAME, what)._busy(holder)
    files = _manifest(path, command)
    changed = _unproven(path, files)
    if changed:
        raise LoralabError(f"{what}: its manifest lists {changed[0]!r}, but that file is not "
                           "the one loralab wrote there (no checksum, or another one); "
                           "loralab never overwrites or deletes other files: give a new "
                           "folder, or move that file out")
    foreign = _foreign(path, set(files), tuple(state), own=(path / MANIFEST_NAME).exists())
    if foreign:
        whose = "no loralab run recorded writing" if not files else \
            f"an earlier 'loralab {command}' did not write"
        raise LoralabError(f"{what} holds {len(foreign)} file(s) that {whose} (e.g. "
                           f"{foreign[0]!r}); loralab never overwrites or mixes in other files: "
                           "give a new or empty folder")
    return files


class OutputFolder:
    """A claimed output folder: stage files with :meth:`staging`, publish with :meth:`commit`."""

    def __init__(self, path: Path, command: str, old: list[str]) -> None:
        self.path, self.command, self.old = path, command, old
        self.files: list[str] | None = None
        self._staged: list[Path] = []

    def staging(self) -> Path:
        """A fresh folder inside this one to write the run's outputs into (a manifest is
        written first when there is none, so a killed run's staging is provably its own)."""
        if not (self.path / MANIFEST_NAME).exists():
            self._write_manifest(list(self.old), complete=False, sums={})
        tmp = Path(tempfile.mkdtemp(dir=self.path, prefix=f"{_STAGING}{os.getpid()}-"))
        self._staged.append(tmp)
        return tmp

    def _write_manifest(self, files: list[str], complete: bool,
                        sums: dict[str, str]) -> None:
        atomic_write_text(self.path / MANIFEST_NAME, json.dumps({
            "format": _FORMAT, "command": self.command, "complete": complete,
            "written": time.strftime("%Y-%m-%d %H:%M:%S"), "files": sorted(files),
            "sha256": {f: sums[f] for f in sorted(files) if f in sums}}, indent=2) + "\n")

    def commit(self, staged: Path) -> list[str]:
        """Move every file of ``staged`` into place, remove the earlier run's files not
        written again, and record the new list in the manifest. Returns that list.

        The manifest is written first listing old and new files, so a crash in between leaves
        a folder whose every file is still recorded."""
        new = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*")
                     if p.is_file() or p.is_symlink())
        sums = _recorded(self.path)
        proven = {n for n in self.old if n in sums}       # checked before the run began
        sums.update({n: file_sha256(staged / n) for n in new if not (staged / n).is_symlink()})
        self._write_manifest(sorted(set(self.old) | set(new)), complete=False, sums=sums)
        for name in new:
            dest = self.path / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged / name, dest)
        for name in sorted(set(self.old) - set(new)):
            dest = self.path / name
            if name not in proven or not dest.is_file() or dest.is_symlink() \
                    or file_sha256(dest) != sums.get(name):
                continue                                  # not provably loralab's: kept
            with contextlib.suppress(FileNotFoundError):
                dest.unlink()
            for parent in dest.parents:
                if parent == self.path or not parent.is_dir() or any(parent.iterdir()):
                    break
                parent.rmdir()
        self._write_manifest(new, complete=True, sums=sums)
        self.old, self.files = new, new
        return new

    def discard_staging(self) -> None:
        for tmp in self._staged:
            shutil.rmtree(tmp, ignore_errors=True)
        self._staged.clear()


@contextlib.contextmanager
def output_folder(folder: str | os.PathLike[str], command: str, *,
                  state: Iterable[str] = (), flag: str = "--out") -> Iterator[OutputFolder]:
    """Claim ``folder`` for one run of ``command``: check it (:func:`check_output_folder`),
    create it if missing, hold its lock, check again under the lock, and yield the
    :class:`OutputFolder`. A folder this call created is removed again if the run leaves it
    empty (a failed run leaves nothing behind)."""
    path = Path(folder)
    state = tuple(state)
    check_output_folder(path, command, state=state, flag=flag)
    created = not path.exists()
    check_output_dir(path, create=True, flag=flag)
    lock = OutputLock(path / LOCK_NAME, f"{flag} {str(path)!r}")
    try:
        lock.acquire(command)
        try:
            old = check_output_folder(path, command, state=state, flag=flag, _locked=True)
            claimed = OutputFolder(path, command, old)
            for entry in path.iterdir():               # a killed run's staging / temp files
                if entry.name.startswith(_OWN) and entry.name not in (LOCK_NAME, MANIFEST_NAME):
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
            try:
                yield claimed
            finally:
                claimed.discard_staging()
                if created and claimed.files is None:   # nothing published: leave nothing
                    with contextlib.suppress(OSError):
                        if {p.name for p in path.iterdir()} <= {MANIFEST_NAME, LOCK_NAME}:
                            (path / MANIFEST_NAME).unlink()
        finally:
            lock.release()
    finally:
        if created:
            with contextlib.suppress(OSError):
                path.rmdir()                           # only when empty
