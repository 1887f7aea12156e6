"""An exclusive lock on an output folder (`batch -o`, `sweep -o`, the evaluation report and
saved-maps folders): two runs writing one folder at once would leave a summary that disagrees with
the figures, so a second writer is refused, naming the command that holds the folder.

The lock is a file `.ncviz-batch.lock` in the folder (one name for every command, so that they
also exclude each other) that holds the writer's pid, host and command,
locked with flock(2): the kernel drops the lock when its process dies (kill -9 included), so
a lock file left behind is stale and is taken over. The file is removed on release. Under
torchrun every rank locks a file of its own (`.ncviz-batch.rankN.lock`, rank 0 the plain one).
Where flock is not available (Windows) the pid in the file decides whether it is stale.
"""
from __future__ import annotations

import errno
import logging
import os
import re
import socket
from pathlib import Path
from types import TracebackType

from .errors import NcVizError

log = logging.getLogger(__name__)

LOCK_NAME = ".ncviz-batch.lock"
_COMMAND = re.compile(r"[a-z][a-z0-9-]{0,30}")

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]


def lock_name(rank: int = 0) -> str:
    return LOCK_NAME if rank == 0 else f".ncviz-batch.rank{rank}.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(path: Path) -> str:
    """`another ncviz COMMAND (pid P on HOST)` from the lock file (`ncviz` where it is older or unreadable)."""
    try:
        text = path.read_text(encoding="utf-8").split()
    except (OSError, ValueError):
        return "another ncviz run"
    command = f"ncviz {text[2]}" if len(text) >= 3 and _COMMAND.fullmatch(text[2]) else "ncviz run"
    return f"another {command} (pid {text[0]} on {text[1]})" if len(text) >= 2 else f"another {command}"


def _read_start(fd: int) -> bytes:
    """The first bytes of the file, whatever the descriptor's offset."""
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 200)


class FolderLock:
    """`with FolderLock(folder):` ... `lock.acquire()` once the folder exists; released on exit.

    `command`: what the lock file says holds the folder (`batch`, `sweep`, `evaluate`; `run` for a
    caller that names none), shown to a second writer that is refused."""

    def __init__(self, folder: Path, rank: int = 0, command: str = "run") -> None:
        self.path = Path(folder) / lock_name(rank)
        self.command = command
        self.fd: int | None = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock or raise NcVizError naming the folder and the other writer."""
        while self.fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            if not self._lock(fd):
                os.close(fd)
                raise NcVizError(f"{self.path.parent}: {_owner(self.path)} is writing into this folder; wait "
                                 f"for it to finish or write elsewhere")
            if self._same_file(fd):  # not unlinked by a writer that just finished
                self.fd = fd
            else:
                os.close(fd)
        stale = _read_start(self.fd).decode("utf-8", "replace").strip()
        if stale:
            log.info("%s: taking over the lock left by %s, which is gone", self.path, stale)
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)   # the read moved the offset: write from the start, no NUL bytes
        os.write(self.fd, f"{os.getpid()} {socket.gethostname()} {self.command}\n".encode())

    def _lock(self, fd: int) -> bool:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                    return False
                raise
        text = _read_start(fd).decode("utf-8", "replace").split()  # pragma: no cover - no flock
        return not (text and text[0].isdigit() and int(text[0]) != os.getpid() and _pid_alive(int(text[0])))

    def _same_file(self, fd: int) -> bool:
        try:
            return os.path.samestat(os.fstat(fd), os.stat(self.path))
        except OSError:
            return False

    def release(self) -> None:
        """Remove the lock file and drop the lock (safe to call twice)."""
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)
            self.fd = None
