"""Class names from a file (`--class-names`, one name per line), for checkpoints without them."""
from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .errors import NcVizError, UsageError

if TYPE_CHECKING:
    from .checkpoints import LoadedModel

log = logging.getLogger(__name__)


def read_class_names(path: str | os.PathLike) -> tuple[str, ...]:
    """The names in `path`, one per line (surrounding blanks and trailing empty lines dropped).

    An unreadable file is an NcVizError, an empty name within the list a UsageError; both name the file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise NcVizError(f"{path}: no such file (--class-names)") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise NcVizError(f"{path}: cannot read class names ({reason})") from None
    names = [line.strip() for line in text.splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise UsageError(f"{path}: no class names in the file (--class-names takes one name per line)")
    if "" in names:
        raise UsageError(f"{path}: line {names.index('') + 1} is empty (--class-names takes one name per line)")
    return tuple(names)


def check_class_count(names: Sequence[str], path: str | os.PathLike, num_classes: int) -> None:
    """The file must name every class of the models, no more, no fewer."""
    if len(names) != num_classes:
        raise UsageError(f"{path}: {len(names)} class names, but the models have {num_classes} classes "
                         f"(--class-names takes one name per line)")


def apply_class_names(models: Sequence[LoadedModel], names: Sequence[str], path: str | os.PathLike) -> None:
    """Give every model the names of `path` (replacing the checkpoint's own, if any)."""
    for loaded in models:
        check_class_count(names, path, loaded.meta.num_classes)
        if loaded.meta.class_names and tuple(loaded.meta.class_names) != tuple(names):
            log.info("%s: its class names are replaced by those of %s", loaded.path, path)
        loaded.meta = replace(loaded.meta, class_names=tuple(names))


def class_lines(names: Sequence[str] | None, num_classes: int) -> list[str]:
    """`ncviz classes`: `INDEX<TAB>NAME` per class (only the index when there are no names)."""
    if not names:
        return [str(i) for i in range(num_classes)]
    return [f"{i}\t{name}" for i, name in enumerate(names)]
