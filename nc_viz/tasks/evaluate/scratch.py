"""Each rank's scratch folder (records part, outcomes, histograms) in the temporary folder,
named `ncviz-eval-<host>-<pid>-<random>`: a run killed with SIGKILL cannot remove its own, so
every run first removes those of this host whose process is gone."""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "ncviz-eval-"
_NAME = re.compile(re.escape(PREFIX) + r"([0-9a-f]{8})-(\d+)-.+", re.S)


def _host() -> str:
    """This machine, as 8 hex digits (a host name may hold any character)."""
    return hashlib.sha256(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def remove_stale_scratch(folder: Path | None = None) -> int:
    """Remove the scratch folders in `folder` (default: the temporary folder) left by runs of
    this host, owned by this user, whose process is gone; the number removed."""
    root = Path(folder or tempfile.gettempdir())
    removed = 0
    try:
        entries = [e for e in os.scandir(root) if e.name.startswith(PREFIX)]
    except OSError:
        return 0
    for entry in entries:
        found = _NAME.fullmatch(entry.name)
        try:
            mine = entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_uid == os.getuid()
        except (OSError, AttributeError):   # AttributeError: no getuid (Windows)
            mine = False
        if found and mine and found.group(1) == _host() and not _alive(int(found.group(2))):
            shutil.rmtree(entry.path, ignore_errors=True)
            log.info("removed %s, left by a run that was killed", entry.path)
            removed += 1
    return removed


@contextmanager
def scratch_folder() -> Iterator[Path]:
    """A new scratch folder, removed on exit (stale ones of killed runs are removed first)."""
    remove_stale_scratch()
    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}{_host()}-{os.getpid()}-") as path:
        yield Path(path)
