"""A lock file, so that two runs cannot write the same outputs at once.

The lock is created with ``O_CREAT | O_EXCL`` (only one process can create it) and held with
``flock`` for as long as the run lasts. A lock whose holder died (kill -9, a crash, a power
cut) is no longer ``flock``-ed, so the next run takes it over instead of refusing forever;
where ``fcntl`` is missing the holder's process id is checked instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

from ..errors import LoralabError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux or macOS
    fcntl = None  # type: ignore[assignment]

__all__ = ["OutputLock", "lock_is_held"]


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _read(fd: int) -> dict:
    with contextlib.suppress(OSError, ValueError):
        os.lseek(fd, 0, os.SEEK_SET)
        data = json.loads(os.read(fd, 4096).decode("utf-8") or "{}")
        return data if isinstance(data, dict) else {}
    return {}


class OutputLock:
    """``path`` as a lock file; ``what`` names what it guards in the refusal message."""

    def __init__(self, path: str | os.PathLike[str], what: str) -> None:
        self.path, self.what = Path(path), what
        self._fd: int | None = None

    def _busy(self, info: dict) -> LoralabError:
        who = ", ".join(f"{k} {info[k]}" for k in ("command", "pid", "host") if k in info)
        return LoralabError(f"{self.what} is in use by another loralab run"
                            f"{f' ({who})' if who else ''}; wait for it to finish or give "
                            "another name")

    def _held(self, fd: int, created: bool) -> bool:
        """Take the ``flock`` of ``fd``; ``False`` when a live run holds it."""
        if fcntl is None:
            info = _read(fd)
            return created or info.get("host") != socket.gethostname() \
                or not _pid_alive(info.get("pid"))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def acquire(self, command: str) -> None:
        """Create and hold the lock, or raise :class:`LoralabError` naming the holder."""
        for attempt in range(20):
            created = True
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
            except FileExistsError:
                created = False
                try:
                    fd = os.open(self.path, os.O_RDWR)
                except FileNotFoundError:          # released meanwhile: try again
                    continue
            except OSError as exc:
                raise LoralabError(f"{self.what}: its lock {str(self.path)!r} cannot be "
                                   f"created ({exc.strerror})") from None
            if not self._held(fd, created):
                info = _read(fd)
                os.close(fd)
                if attempt < 5:                    # maybe a brief read-only check
                    time.sleep(0.02)
                    continue
                raise self._busy(info)
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:                           # unlinked by its last holder: retry
                os.close(fd)
                time.sleep(0.01)
                continue
            info = {"command": command, "pid": os.getpid(), "host": socket.gethostname(),
                    "since": time.strftime("%Y-%m-%d %H:%M:%S")}
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, json.dumps(info).encode("utf-8"))
            self._fd = fd
            return
        raise LoralabError(f"{self.what}: its lock {str(self.path)!r} keeps changing; "
                           "another run is starting there")

    def release(self) -> None:
        """Remove the lock file (while still holding it), then let go."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if os.fstat(self._fd).st_ino == os.stat(self.path).st_ino:
                os.unlink(self.path)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_is_held(path: str | os.PathLike[str]) -> dict | None:
    """The holder's info when a live run holds the lock at ``path``, else ``None``
    (read-only: used to refuse before any work, the real check is :meth:`acquire`)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        info = _read(fd)
        if fcntl is None:
            alive = info.get("host") == socket.gethostname() and _pid_alive(info.get("pid"))
            return info if alive else None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return info
        return None
    finally:
        os.close(fd)
