"""Class names from a file (`class_names`, one name per line), for checkpoints without them."""
from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..core.errors import ParameterError
from .meta_checks import MAX_NAME_CHARS
from ..core.files import read_text_file

if TYPE_CHECKING:
    from .checkpoints import LoadedModel

log = logging.getLogger(__name__)


def read_class_names(path: str | os.PathLike) -> tuple[str, ...]:
    """The names in `path`, one per line (surrounding blanks and trailing empty lines dropped).

    A file that is not a regular UTF-8 file is an NcVizError; an empty or over-long name within the
    list a ParameterError naming `class_names`; both name the file.
    """
    path = Path(path)
    text = read_text_file(path, "class-names file")
    names = [line.strip() for line in text.splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise ParameterError("class_names", f"{path}: no class names in the file ({{param}} takes one name per line)")
    if "" in names:
        raise ParameterError("class_names", f"{path}: line {names.index('') + 1} is empty "
                                            f"({{param}} takes one name per line)")
    long = next((i for i, name in enumerate(names) if len(name) > MAX_NAME_CHARS), None)
    if long is not None:
        raise ParameterError("class_names", f"{path}: line {long + 1} is a name of {len(names[long]):,} characters; "
                             f"a class name has at most {MAX_NAME_CHARS} ({{param}} takes one name per line)")
    return tuple(names)


def check_class_count(names: Sequence[str], path: str | os.PathLike, num_classes: int) -> None:
    """The file must name every class of the models, no more, no fewer."""
    if len(names) != num_classes:
        raise ParameterError("class_names", f"{path}: {len(names)} class names, but the models have "
                             f"{num_classes} classes ({{param}} takes one name per line)")


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
