"""The data-set layouts ncviz reads, by name: each reader module registers itself here with
`@register(name, detect=...)` (a `NamedRegistry`, as the CAM methods and figure layouts are);
`registry` imports every module of this package (so a new reader module is found with no other
edit) and chooses among them. No torch here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..core.registry import NamedRegistry
from .base import Dataset

__all__ = ["READERS", "Reader", "register", "sort_readers", "unregister"]


@dataclass(frozen=True)
class Reader:
    """One layout: how to recognise it and how to read it."""

    name: str
    read: Callable[..., Dataset]
    detect: Callable[[Path], bool]
    fallback: bool = False   # chosen by `auto` only when nothing else matches
    summary: str = ""
    order: int = 50          # place among the `format` choices: the layouts, then the fallbacks,
                             # each by `order`, then by name


_REGISTRY: NamedRegistry[Reader] = NamedRegistry("reader")
READERS = _REGISTRY.items  # name -> Reader, in registration order (the `format` choices)
unregister = _REGISTRY.unregister


def register(name: str, detect: Callable[[Path], bool], *, fallback: bool = False,
             summary: str = "", order: int = 50) -> Callable[[Callable[..., Dataset]], Callable[..., Dataset]]:
    """Decorator: register `read(path, *, images, split, class_names, problems)` as `name`."""
    def wrap(read: Callable[..., Dataset]) -> Callable[..., Dataset]:
        _REGISTRY.register(Reader(name, read, detect, fallback, summary, order))
        return read
    return wrap


def sort_readers() -> None:
    """Put `READERS` in the `format` choices' order (see `Reader.order`)."""
    _REGISTRY.sort(lambda reader: (reader.fallback, reader.order, reader.name))
